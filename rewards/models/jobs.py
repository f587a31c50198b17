"""Attested jobs: the work the network's scheduler ran, which alone earns compute rewards."""

from django.db import models
from django.db.models import F, Q
from django.utils import timezone


class Job(models.Model):
    """Work the network's scheduler says it ran on a GPU; only attested work earns compute rewards.

    A job may name a MIG instance; it counts for that instance's physical GPU.
    """

    class Kind(models.TextChoices):
        TRAINING = "training", "training"
        INFERENCE = "inference", "inference"
        OTHER = "other", "other"

    job_id = models.CharField(max_length=128)
    gpu = models.ForeignKey("contributors.GPU", on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True, help_text="Empty while running.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(fields=["job_id"], name="job_id_unique"),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True) | Q(ended_at__gte=F("started_at")),
                name="job_ends_after_start",
            ),
        ]
        indexes = [models.Index(fields=["gpu", "started_at"], name="job_gpu_started")]

    def __str__(self) -> str:
        return f"{self.job_id} on {self.gpu_id}"
