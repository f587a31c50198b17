"""Claims on-chain (DESIGN.md "Claims" and "Balance"; rewards.vouchers, rewards.watcher): the
vouchers the portal signed, the `Claimed` events the watcher read, and how far it has read."""

from django.db import models
from django.utils import timezone

from rewards.wei import WeiField


class Claim(models.Model):
    """A voucher the portal signed for a contributor's wallet, and what became of it.

    Vouchers are cumulative per (chain, distributor, account): `cumulative_wei` is the total the
    account may have received, `amount_wei` what this voucher added to the account's earlier
    vouchers. issued → submitted (the page reported a tx hash, or the portal's relayer sent it,
    `relayed_at`) → confirmed (the watcher saw a Claimed event covering it with enough
    confirmations) or expired (the watcher saw a confirmed block past the deadline without one).
    """

    class Status(models.TextChoices):
        ISSUED = "issued", "issued"
        SUBMITTED = "submitted", "submitted"
        CONFIRMED = "confirmed", "confirmed"
        EXPIRED = "expired", "expired"

    contributor = models.ForeignKey(
        "contributors.Contributor", on_delete=models.PROTECT, related_name="claims"
    )
    chain_id = models.PositiveBigIntegerField()
    distributor = models.CharField(max_length=42, help_text="EIP-55 address of the contract.")
    account = models.CharField(max_length=42, help_text="EIP-55 wallet the tokens go to.")
    cumulative_wei = WeiField(help_text="The voucher's cumulativeAmount.")
    amount_wei = WeiField(help_text="What this voucher added to the account's earlier ones.")
    deadline = models.PositiveBigIntegerField(help_text="Unix seconds; redeemable until then.")
    signature = models.CharField(max_length=132)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ISSUED)
    tx_hash = models.CharField(
        max_length=66, blank=True, help_text="Reported by the page; on confirmation, the payer's."
    )
    confirmed_block = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    submitted_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    relayed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the portal's relayer sent it (gasless claim)."
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["contributor", "created_at"], name="claim_contributor_created"),
            models.Index(
                fields=["chain_id", "distributor", "account", "status"], name="claim_account_status"
            ),
        ]

    def __str__(self) -> str:
        return f"claim {self.pk}: {self.cumulative_wei} wei cumulative to {self.account}"

    @property
    def is_open(self) -> bool:
        return self.status in (self.Status.ISSUED, self.Status.SUBMITTED)


class ClaimEvent(models.Model):
    """A `Claimed` event of a distributor, read by the watcher once it had enough confirmations.

    What the chain paid: per account, the highest `cumulative_wei` is its confirmed total.
    """

    chain_id = models.PositiveBigIntegerField()
    distributor = models.CharField(max_length=42)
    account = models.CharField(max_length=42)
    amount_wei = WeiField()
    cumulative_wei = WeiField()
    block_number = models.PositiveBigIntegerField()
    block_hash = models.CharField(max_length=66)
    tx_hash = models.CharField(max_length=66)
    log_index = models.PositiveIntegerField()
    block_time = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The block's timestamp: when the tokens moved (empty for events read before "
        "it was recorded; seen_at stands in for it).",
    )
    seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["block_number", "log_index"]
        constraints = [
            models.UniqueConstraint(
                fields=["chain_id", "tx_hash", "log_index"], name="claimevent_once_per_log"
            ),
        ]
        indexes = [
            models.Index(fields=["chain_id", "distributor", "account"], name="claimevent_account"),
        ]

    def __str__(self) -> str:
        return f"Claimed {self.amount_wei} wei by {self.account} in block {self.block_number}"


class ChainCursor(models.Model):
    """How far the watcher has read a distributor's events: the last block fully applied."""

    chain_id = models.PositiveBigIntegerField()
    distributor = models.CharField(max_length=42)
    block_number = models.BigIntegerField(help_text="-1 before any block was read.")
    block_hash = models.CharField(max_length=66, blank=True)
    block_timestamp = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["chain_id", "distributor"], name="chaincursor_one_per_distributor"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.distributor} on {self.chain_id} read to block {self.block_number}"


class Relayer(models.Model):
    """The account that sends relayed claims on a chain: one row, locked while it sends, so
    two workers never sign with the same nonce; and what it last did, for admins."""

    chain_id = models.PositiveBigIntegerField()
    address = models.CharField(max_length=42)
    last_nonce = models.BigIntegerField(null=True, blank=True)
    last_tx_hash = models.CharField(max_length=66, blank=True)
    sent = models.PositiveIntegerField(default=0, help_text="Transactions it sent.")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "address"], name="relayer_one_per_chain"),
        ]

    def __str__(self) -> str:
        return f"relayer {self.address} on {self.chain_id}"
