"""Reward models: attested jobs, the GPU performance catalog, policies, epochs, the ledger and
its day totals, claims and their vouchers. DESIGN.md "Reward definitions" is the reference for
all of it; `rewards.settlement` computes it.
"""

from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models, transaction
from django.db.models import F, Q
from django.db.models.functions import Lower
from django.utils import timezone

from rewards.wei import WeiField


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


class GpuModel(models.Model):
    """A row of the performance catalog: GPUs whose name contains `pattern` have this weight.

    Matching is case-insensitive and the longest matching pattern wins, so "L40S" beats "L4".
    The row with an empty pattern is the catalog's default: every name contains it, so it
    applies exactly when nothing longer matches (an unrated model, until an admin rates it).
    """

    pattern = models.CharField(
        max_length=100,
        blank=True,
        help_text="Matched case-insensitively inside the GPU name; empty: the default weight.",
    )
    weight = models.DecimalField(
        max_digits=9,
        decimal_places=4,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Relative performance (NVIDIA A100 = 1). Compute units scale with it.",
    )
    memory_sizes_gib = models.JSONField(
        default=list,
        blank=True,
        help_text="Memory sizes (GiB) the model's variants ship with, e.g. [40, 80]; a GPU of "
        "this model reporting more than the largest is refused. Empty: no check.",
    )
    board_power_w = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Highest board power limit of its variants (W); telemetry far above it is "
        "implausible. Empty: no check.",
    )
    notes = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "GPU model rating"
        ordering = ["pattern"]
        constraints = [
            models.UniqueConstraint(Lower("pattern"), name="gpumodel_pattern_unique_ci"),
            models.CheckConstraint(condition=Q(weight__gte=0), name="gpumodel_weight_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.pattern or '(default)'} * {self.weight}"

    @property
    def is_default(self) -> bool:
        return self.pattern == ""


class RewardPolicy(models.Model):
    """Epoch length, grace, max gap and the two pools, in effect from `effective_from`.

    Without any row the default policy from settings (REWARD_*) applies from the beginning of
    time. A new policy takes effect at `effective_from`, which may not lie before the end of the
    last settled epoch: settled epochs never change.
    """

    effective_from = models.DateTimeField(unique=True)
    epoch_length_s = models.PositiveIntegerField(validators=[MinValueValidator(60)])
    grace_s = models.PositiveIntegerField()
    max_gap_s = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    compute_pool_wei = WeiField(help_text="Wei paid per epoch for compute (1 OMNIT = 10^18).")
    idle_pool_wei = WeiField(help_text="Wei paid per epoch for idle committed memory.")
    created_at = models.DateTimeField(default=timezone.now)
    notes = models.CharField(max_length=200, blank=True)

    class Meta:
        verbose_name_plural = "reward policies"
        ordering = ["-effective_from"]
        constraints = [
            models.CheckConstraint(
                condition=Q(epoch_length_s__gte=60), name="rewardpolicy_epoch_at_least_a_minute"
            ),
            models.CheckConstraint(condition=Q(max_gap_s__gte=1), name="rewardpolicy_max_gap_set"),
        ]

    def __str__(self) -> str:
        start = "the beginning" if self.pk is None else self.effective_from.isoformat()
        return f"{self.epoch_length_s} s epochs from {start}"

    @classmethod
    def default(cls) -> "RewardPolicy":
        """The settings' policy (never saved): in effect wherever no stored policy is."""
        return cls(
            effective_from=datetime(1970, 1, 1, tzinfo=UTC),
            epoch_length_s=settings.REWARD_EPOCH_S,
            grace_s=settings.REWARD_GRACE_S,
            max_gap_s=settings.REWARD_MAX_GAP_S,
            compute_pool_wei=settings.REWARD_COMPUTE_POOL_WEI,
            idle_pool_wei=settings.REWARD_IDLE_POOL_WEI,
        )

    def clean(self) -> None:
        for name in ("compute_pool_wei", "idle_pool_wei"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValidationError({name: "A pool cannot be negative."})
        last = Epoch.objects.order_by("-end").values_list("end", flat=True).first()
        if self.effective_from and last and self.effective_from < last:
            raise ValidationError(
                {"effective_from": f"Epochs up to {last.isoformat()} are settled already."}
            )


class Epoch(models.Model):
    """One settled window of rewards, with the policy it used and what each pool paid.

    A row exists only once its epoch is settled: settlement writes the epoch, its entries and
    its held-out records in one transaction, and the unique start makes a second settlement
    (another worker, a rerun) fail instead of paying twice.
    """

    class Status(models.TextChoices):
        SETTLING = "settling", "settling"
        SETTLED = "settled", "settled"

    start = models.DateTimeField()
    end = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SETTLING)
    policy = models.ForeignKey(
        RewardPolicy,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="epochs",
        help_text="Empty: the default policy from settings, as recorded below.",
    )
    # The policy as applied, so an epoch explains itself whatever happens to settings later.
    grace_s = models.PositiveIntegerField()
    max_gap_s = models.PositiveIntegerField()
    compute_pool_wei = WeiField()
    idle_pool_wei = WeiField()
    compute_units = models.TextField(default="0", help_text="Σ compute units, exact.")
    idle_units = models.TextField(default="0", help_text="Σ idle units, exact.")
    compute_paid_wei = WeiField(default=0)
    idle_paid_wei = WeiField(default=0)
    compute_unallocated_wei = WeiField(default=0, help_text="The pool, when nobody earned it.")
    idle_unallocated_wei = WeiField(default=0, help_text="The pool, when nobody earned it.")
    gpu_count = models.PositiveIntegerField(default=0, help_text="GPUs paid this epoch.")
    held_out_count = models.PositiveIntegerField(default=0)
    method = models.CharField(
        max_length=10, blank=True, help_text="How usage was computed: python or sql."
    )
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-start"]
        constraints = [
            models.UniqueConstraint(fields=["start"], name="epoch_start_unique"),
            models.CheckConstraint(condition=Q(end__gt=F("start")), name="epoch_ends_after_start"),
        ]

    def __str__(self) -> str:
        return f"epoch {self.start.isoformat()} - {self.end.isoformat()} ({self.status})"


class RewardEntry(models.Model):
    """What one GPU earned of one pool in one epoch, with the inputs that explain it.

    Written once by settlement and never edited: a correction is a new entry.
    """

    class Kind(models.TextChoices):
        COMPUTE = "compute", "compute"
        IDLE = "idle", "idle"

    epoch = models.ForeignKey(Epoch, on_delete=models.PROTECT, related_name="entries")
    gpu = models.ForeignKey(
        "contributors.GPU", on_delete=models.PROTECT, related_name="reward_entries"
    )
    contributor = models.ForeignKey(
        "contributors.Contributor", on_delete=models.PROTECT, related_name="reward_entries"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    units = models.TextField(help_text="Exact decimal: compute units or GiB·s of idle memory.")
    amount_wei = WeiField()
    inputs = models.JSONField(help_text="Seconds, utilization, weight, GiB·s, pool and share.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "reward entries"
        ordering = ["epoch_id", "gpu_id", "kind"]
        constraints = [
            models.UniqueConstraint(
                fields=["epoch", "gpu", "kind"], name="rewardentry_one_per_epoch_gpu_kind"
            ),
        ]
        indexes = [
            models.Index(fields=["contributor", "epoch"], name="rewardentry_contributor_epoch"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount_wei} wei to {self.gpu_id} in {self.epoch_id}"

    def save(self, *args, **kwargs) -> None:
        """Add one entry (a correction, say) and its amount to the day totals; settlement
        writes its entries in bulk and adds them to the day totals itself."""
        from rewards.ledger import add_to_earning_days

        if self.pk is not None:
            raise ValidationError("Reward entries are never edited; add a correction instead.")
        with transaction.atomic():
            super().save(*args, **kwargs)
            add_to_earning_days(self.epoch.start, [self])


class EarningDay(models.Model):
    """What one contributor earned on one UTC day (epochs starting that day), by pool.

    Written by settlement in the transaction that writes the day's entries, so it always equals
    the sum of the ledger (a property test checks it): pages and balances read a row per day
    instead of summing every entry.
    """

    contributor = models.ForeignKey(
        "contributors.Contributor", on_delete=models.CASCADE, related_name="earning_days"
    )
    day = models.DateField()
    compute_wei = WeiField(default=0)
    idle_wei = WeiField(default=0)

    class Meta:
        ordering = ["contributor_id", "day"]
        constraints = [
            models.UniqueConstraint(fields=["contributor", "day"], name="earningday_one_per_day"),
        ]

    def __str__(self) -> str:
        return f"{self.contributor_id} on {self.day}: {self.compute_wei} + {self.idle_wei} wei"

    @property
    def total_wei(self) -> int:
        return self.compute_wei + self.idle_wei


class HeldOut(models.Model):
    """A GPU that reported in an epoch but earned nothing in it, and why (shown to its owner)."""

    class Reason(models.TextChoices):
        DISABLED = "disabled", "disabled by its owner"
        FLAGGED = "flagged", "held out while an admin reviews a flag"

    epoch = models.ForeignKey(Epoch, on_delete=models.PROTECT, related_name="held_out")
    gpu = models.ForeignKey("contributors.GPU", on_delete=models.PROTECT, related_name="held_out")
    contributor = models.ForeignKey(
        "contributors.Contributor", on_delete=models.PROTECT, related_name="held_out"
    )
    reason = models.CharField(max_length=20, choices=Reason.choices)
    detail = models.TextField(blank=True)
    covered_seconds = models.TextField(
        default="0", help_text="Time its samples covered in the epoch, exact."
    )

    class Meta:
        verbose_name = "held-out GPU"
        verbose_name_plural = "held-out GPUs"
        ordering = ["epoch_id", "gpu_id"]
        constraints = [
            models.UniqueConstraint(fields=["epoch", "gpu"], name="heldout_one_per_epoch_gpu"),
        ]

    def __str__(self) -> str:
        return f"{self.gpu_id} held out of {self.epoch_id}: {self.reason}"


# --- Claims on-chain (DESIGN.md "Claims" and "Balance"; rewards.vouchers, rewards.watcher) ----


class Claim(models.Model):
    """A voucher the portal signed for a contributor's wallet, and what became of it.

    Vouchers are cumulative per (chain, distributor, account): `cumulative_wei` is the total the
    account may have received, `amount_wei` what this voucher added to the account's earlier
    vouchers. issued → submitted (the page reported a tx hash) → confirmed (the watcher saw a
    Claimed event covering it with enough confirmations) or expired (the watcher saw a confirmed
    block past the deadline without one).
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
