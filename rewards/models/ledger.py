"""The ledger: settled epochs, what each GPU earned in them (entries), what each contributor
earned per day (their totals) and the GPUs held out. DESIGN.md "Reward definitions" is the
reference for all of it; `rewards.settlement` computes it.
"""

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import F, Q
from django.utils import timezone

from rewards.models.catalog import RewardPolicy
from rewards.wei import WeiField


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
        max_length=20,
        blank=True,
        help_text="How usage was computed: accumulators, sql (one pass over the raw samples) "
        "or python (the reference).",
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
        UNVERIFIED = "unverified", "no valid proof-of-GPU verification"
        VERIFICATION_FAILED = "verification_failed", "failed its proof-of-GPU challenge"
        PROBE_FAILED = "probe_failed", "the scheduler could not allocate its memory"

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
