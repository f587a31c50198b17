"""Accounts: contributors (with what they show the public), the wallets they proved they
control, sign-in nonces."""

import re
import unicodedata

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from contributors.addresses import checksummed


def validate_eth_address(value: str) -> None:
    if checksummed(value) is None:
        raise ValidationError(f"{value!r} is not an Ethereum address (or its checksum is wrong).")


# A public display name: what the leaderboard may show instead of a shortened wallet.
DISPLAY_NAME_MAX = 32
# Control and format characters (bidi overrides, zero-width joiners), surrogates, private-use
# and unassigned code points, line and paragraph separators: nothing a name needs, and what
# makes one text look like another or break the page around it.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Names must not pass for a wallet (the leaderboard's other way of naming a contributor).
_LOOKS_LIKE_WALLET = re.compile(r"^0x[0-9a-f]", re.IGNORECASE)


def clean_display_name(value: str) -> str:
    """`value` as it would be stored: NFKC-normalised, without control or format characters,
    runs of white space as one space, trimmed. Length and form are checked by
    `validate_display_name`."""
    text = unicodedata.normalize("NFKC", str(value))
    text = "".join(c for c in text if unicodedata.category(c) not in _DROPPED_CATEGORIES)
    return " ".join(text.split())


def validate_display_name(value: str) -> None:
    if value != clean_display_name(value):
        raise ValidationError("A display name may not hold control characters or extra spaces.")
    if len(value) > DISPLAY_NAME_MAX:
        raise ValidationError(f"A display name has at most {DISPLAY_NAME_MAX} characters.")
    if _LOOKS_LIKE_WALLET.match(value):
        raise ValidationError("A display name may not look like a wallet address (0x…).")


class Contributor(AbstractUser):
    """A person who shares GPUs with the network (or an admin who runs it).

    Contributors sign in with a wallet signature, so they have no usable password; their
    `username` is the address of the wallet they first signed in with. Staff accounts created
    with `createsuperuser` sign in to the admin with a password as usual.
    """

    class Leaderboard(models.TextChoices):
        WALLET = "wallet", "listed by a shortened wallet address"
        NAME = "name", "listed by display name"
        HIDDEN = "hidden", "not listed"

    display_name = models.CharField(
        max_length=DISPLAY_NAME_MAX,
        blank=True,
        default="",
        validators=[validate_display_name],
        help_text="Shown on the public leaderboard when they chose to be listed by it.",
    )
    leaderboard = models.CharField(
        max_length=8,
        choices=Leaderboard.choices,
        default=Leaderboard.WALLET,
        help_text="How the public leaderboard shows them; not listed: nowhere at all.",
    )

    class Meta:
        db_table = "contributors_contributor"
        verbose_name = "contributor"
        constraints = [
            # One person per name on the public pages: nobody can pass for somebody else.
            models.UniqueConstraint(
                Lower("display_name"),
                condition=~Q(display_name=""),
                name="contributor_display_name_unique_ci",
                violation_error_message="Another contributor has this display name.",
            ),
        ]

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
