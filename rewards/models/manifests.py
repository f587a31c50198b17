"""The published manifest of a settled epoch: its canonical JSON and that JSON's SHA-256.

`rewards.manifests` builds it from the ledger and stores it once; after that it is only read,
so the bytes anyone downloads, and the digest on statements and the network page, never change.
"""

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from rewards.models.ledger import Epoch


class EpochManifest(models.Model):
    """One settled epoch's manifest, written once (the epoch is its primary key) and never
    edited."""

    epoch = models.OneToOneField(
        Epoch, on_delete=models.PROTECT, primary_key=True, related_name="manifest"
    )
    sha256 = models.CharField(max_length=64, help_text="Hex SHA-256 of `body`'s bytes.")
    body = models.TextField(help_text="The canonical JSON (ASCII), byte for byte as served.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "epoch manifest"
        ordering = ["-epoch_id"]

    def __str__(self) -> str:
        return f"manifest of epoch {self.epoch_id}: {self.sha256}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise ValidationError("A published manifest never changes.")
        super().save(*args, **kwargs)
