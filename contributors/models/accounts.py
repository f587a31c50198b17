"""Accounts: contributors, the wallets they proved they control, sign-in nonces."""

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from contributors.addresses import checksummed


def validate_eth_address(value: str) -> None:
    if checksummed(value) is None:
        raise ValidationError(f"{value!r} is not an Ethereum address (or its checksum is wrong).")


class Contributor(AbstractUser):
    """A person who shares GPUs with the network (or an admin who runs it).

    Contributors sign in with a wallet signature, so they have no usable password; their
    `username` is the address of the wallet they first signed in with. Staff accounts created
    with `createsuperuser` sign in to the admin with a password as usual.
    """

    class Meta:
        db_table = "contributors_contributor"
        verbose_name = "contributor"

    def __str__(self) -> str:
        return self.username

    @property
    def payout_wallet(self) -> "Wallet | None":
        return self.wallets.filter(is_payout=True).first()


class Wallet(models.Model):
    """An Ethereum account a contributor proved they control; one of them receives payouts."""

    contributor = models.ForeignKey(Contributor, on_delete=models.CASCADE, related_name="wallets")
    address = models.CharField(
        max_length=42,
        validators=[validate_eth_address],
        help_text="EIP-55 checksummed address.",
    )
    linked_at = models.DateTimeField(default=timezone.now)
    is_payout = models.BooleanField(
        default=False, help_text="Claims pay this wallet. Exactly one per contributor."
    )

    class Meta:
        ordering = ["linked_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["address"], name="wallet_address_unique"),
            models.UniqueConstraint(
                fields=["contributor"],
                condition=Q(is_payout=True),
                name="wallet_one_payout_per_contributor",
            ),
            models.CheckConstraint(
                condition=Q(address__startswith="0x"), name="wallet_address_hex_prefixed"
            ),
        ]

    def __str__(self) -> str:
        return self.address

    def save(self, *args, **kwargs) -> None:
        # One spelling per account, so the unique constraint also holds across letter case.
        if self.address and checksummed(self.address):
            self.address = checksummed(self.address)
        super().save(*args, **kwargs)

    @transaction.atomic
    def make_payout(self) -> None:
        """Make this the contributor's payout wallet, and no other."""
        Wallet.objects.filter(contributor_id=self.contributor_id, is_payout=True).exclude(
            pk=self.pk
        ).update(is_payout=False)
        Wallet.objects.filter(pk=self.pk).update(is_payout=True)
        self.is_payout = True


class SignInNonce(models.Model):
    """A nonce the portal issued for an EIP-4361 message; a signature spends it exactly once."""

    nonce = models.CharField(max_length=64)
    issued_at = models.DateTimeField(default=timezone.now, db_index=True)
    consumed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["nonce"], name="signin_nonce_unique")]

    def __str__(self) -> str:
        return self.nonce

    def consume(self) -> bool:
        """Spend the nonce; True for exactly one caller, however many race."""
        now = timezone.now()
        won = SignInNonce.objects.filter(pk=self.pk, consumed_at__isnull=True).update(
            consumed_at=now
        )
        return won == 1
