"""What rewards are computed from besides usage: the GPU performance catalog (weights, and the
specs that make telemetry plausible) and the reward policies in effect over time."""

from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from rewards.wei import WeiField


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
    int8_tops = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Published dense int8 tensor throughput (TOPS, no sparsity). Proof-of-GPU "
        "challenges are sized and timed from it. Empty: GPU_VERIFICATION_DEFAULT_TOPS.",
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
        from rewards.models.ledger import Epoch  # the ledger's epochs refer to policies

        for name in ("compute_pool_wei", "idle_pool_wei"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValidationError({name: "A pool cannot be negative."})
        last = Epoch.objects.order_by("-end").values_list("end", flat=True).first()
        if self.effective_from and last and self.effective_from < last:
            raise ValidationError(
                {"effective_from": f"Epochs up to {last.isoformat()} are settled already."}
            )
