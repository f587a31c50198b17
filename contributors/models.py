"""The people and machines of the network: contributors, their wallets, nodes and GPUs."""

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import F, Q
from django.utils import timezone
from eth_utils import is_address, to_checksum_address

from contributors import tokens


def validate_eth_address(value: str) -> None:
    if not (isinstance(value, str) and value.startswith("0x") and is_address(value)):
        raise ValidationError(f"{value!r} is not an Ethereum address.")


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
        if self.address and is_address(self.address):
            self.address = to_checksum_address(self.address)
        super().save(*args, **kwargs)

    @transaction.atomic
    def make_payout(self) -> None:
        """Make this the contributor's payout wallet, and no other."""
        Wallet.objects.filter(contributor_id=self.contributor_id, is_payout=True).exclude(
            pk=self.pk
        ).update(is_payout=False)
        Wallet.objects.filter(pk=self.pk).update(is_payout=True)
        self.is_payout = True


class Node(models.Model):
    """A machine running the OmniTensor agent; it posts telemetry with its own token."""

    owner = models.ForeignKey(Contributor, on_delete=models.CASCADE, related_name="nodes")
    name = models.CharField(max_length=100)
    hostname = models.CharField(max_length=255, blank=True)
    agent_version = models.CharField(max_length=50, blank=True)
    token_prefix = models.CharField(
        max_length=24, help_text="Public part of the node token, used to find the node."
    )
    token_hash = models.CharField(
        max_length=64, help_text="SHA-256 of the node token; the token itself is never stored."
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["owner_id", "name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["token_prefix"], name="node_token_prefix_unique"),
            models.UniqueConstraint(fields=["token_hash"], name="node_token_hash_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.owner})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def set_new_token(self) -> str:
        """Give the node a fresh token and return it; the old one stops working on save."""
        issued = tokens.issue()
        self.token_prefix = issued.prefix
        self.token_hash = issued.digest
        return issued.plaintext

    @classmethod
    def authenticate(cls, token: str) -> "Node | None":
        """The node holding `token` (revoked ones included: callers say 'revoked'), or None."""
        prefix = tokens.split_prefix(token)
        if prefix is None:
            return None
        node = cls.objects.select_related("owner").filter(token_prefix=prefix).first()
        if node is None or not tokens.matches(token, node.token_hash):
            return None
        return node

    def revoke(self) -> None:
        Node.objects.filter(pk=self.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.refresh_from_db(fields=["revoked_at"])


class GPU(models.Model):
    """One GPU (or MIG instance) of a node, as the agent reported it, with the owner's choices.

    `committed_memory_mib` is what the owner offers the network; empty means all of it, so a
    driver that reports a slightly different total never leaves the commitment above it.
    """

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="gpus")
    uuid = models.CharField(max_length=96, help_text="As NVML prints it: GPU-… or MIG-…")
    name = models.CharField(max_length=200, help_text="Model name, e.g. NVIDIA H100 80GB HBM3.")
    memory_total_mib = models.PositiveIntegerField()
    committed_memory_mib = models.PositiveIntegerField(
        null=True, blank=True, help_text="Memory committed to the network; empty means all."
    )
    driver_version = models.CharField(max_length=50, blank=True)
    pci_bus_id = models.CharField(max_length=50, blank=True)
    mig_parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="mig_instances",
        help_text="The physical GPU of a MIG instance; its rewards count there.",
    )
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    enabled = models.BooleanField(
        default=True, help_text="Off: the owner took this GPU out of the network."
    )

    class Meta:
        verbose_name = "GPU"
        ordering = ["node_id", "uuid"]
        constraints = [
            models.UniqueConstraint(fields=["uuid"], name="gpu_uuid_unique"),
            models.CheckConstraint(
                condition=Q(committed_memory_mib__isnull=True)
                | Q(committed_memory_mib__lte=F("memory_total_mib")),
                name="gpu_committed_within_total",
            ),
            models.CheckConstraint(
                condition=~Q(mig_parent=F("id")), name="gpu_not_its_own_mig_parent"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.uuid}"

    @property
    def effective_committed_mib(self) -> int:
        if self.committed_memory_mib is None:
            return self.memory_total_mib
        return min(self.committed_memory_mib, self.memory_total_mib)


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
