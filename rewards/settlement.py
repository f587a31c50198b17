"""Settlement: what every GPU earned in an epoch, as DESIGN.md "Reward definitions" says.

- **Epoch**: `[start, start + length)`, aligned to multiples of its length since the Unix epoch,
  under the policy in effect at its start. It settles once `end + grace` has passed and no
  pending batch holds a sample inside it. Samples arriving later are kept, not rewarded.
- **Usage** (coverage, busy, idle): `rewards.usage` defines it over the raw samples;
  settlement reads it from the drains' accumulators (`rewards.accumulators`), one row or two
  per GPU, and from raw samples only for GPUs the sums cannot tell.
- **Compute units** = Σ busy seconds * utilization/100 * weight (null utilization = 0).
- **Idle units** = Σ idle seconds * available committed MiB / 1024 (GiB·s).
- **Out of the epoch**: GPUs without a valid proof-of-GPU verification at the epoch's end
  (`contributors.verification.challenges.standing`), whose last scheduler probe failed, that
  are flagged or disabled earn nothing; the reason is recorded.
- **Idle memory** counts at most what the last valid successful scheduler probe allocated.
- **Pools**: `floor(pool * units / Σunits)`, then the leftover wei one each by largest
  remainder, ties by GPU uuid ascending. A pool nobody earned is recorded unallocated.
- **Ledger**: one entry per (epoch, GPU, kind), written once, in the same transaction as the
  epoch row. The epoch's unique start makes a second settlement (a rerun, another worker) fail
  and roll back: settling twice changes nothing.
"""

import logging
import time
from bisect import bisect_left
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from math import lcm

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Min, OuterRef, Q, Subquery
from django.utils import timezone

from contributors.models import GPU, GpuFlag, Probe, Sample, TelemetryBatch
from contributors.telemetry.validation import stored_sample
from contributors.verification import challenges
from portal import metrics
from portal.lib import db
from rewards import accumulators
from rewards.catalog import Catalog
from rewards.ledger import add_to_earning_days
from rewards.models import Epoch, HeldOut, RewardEntry, RewardPolicy
from rewards.usage import Usage, usage_for
from rewards.wei import decimal_string, rounded_decimal, rounded_ratio

log = logging.getLogger(__name__)

UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US_PER_S = 1_000_000
MIB_PER_GIB = 1024


# --- epochs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """An epoch to settle: its time and the policy in effect at its start."""

    start: datetime
    end: datetime
    policy: RewardPolicy

    @property
    def due_at(self) -> datetime:
        return self.end + timedelta(seconds=self.policy.grace_s)


def policy_at(moment: datetime) -> RewardPolicy:
    stored = RewardPolicy.objects.filter(effective_from__lte=moment).first()  # newest first
    return stored or RewardPolicy.default()


def window_from(cursor: datetime) -> Window:
    """The epoch that starts at `cursor` (or contains it, if the policy's grid says so)."""
    policy = policy_at(cursor)
    length = timedelta(seconds=policy.epoch_length_s)
    aligned = UNIX_EPOCH + (cursor - UNIX_EPOCH) // length * length
    start, end = max(aligned, cursor), aligned + length
    next_policy = (
        RewardPolicy.objects.filter(effective_from__gt=cursor)
        .order_by("effective_from")
        .values_list("effective_from", flat=True)
        .first()
    )
    if next_policy is not None and next_policy < end:
        end = next_policy
    return Window(start, end, policy)


def first_cursor() -> datetime | None:
    """Where settlement goes on: the end of the last settled epoch, else the first sample."""
    last = Epoch.objects.order_by("-end").values_list("end", flat=True).first()
    if last is not None:
        return last
    earliest = Sample.objects.aggregate(first=Min("ts"))["first"]
    pending = pending_sample_times()
    candidates = [t for t in (earliest, pending[0] if pending else None) if t is not None]
    if not candidates:
        return None
    # The first epoch is the one that holds the first sample, on its policy's grid.
    first = min(candidates)
    length = timedelta(seconds=policy_at(first).epoch_length_s)
    return UNIX_EPOCH + (first - UNIX_EPOCH) // length * length


def pending_sample_times() -> list[datetime]:
    """The times of samples accepted but not yet stored, sorted: they hold their epochs back."""
    times = []
    pending = TelemetryBatch.objects.filter(status=TelemetryBatch.Status.PENDING)
    for samples in pending.values_list("samples", flat=True).iterator(chunk_size=200):
        times.extend(datetime.fromisoformat(stored_sample(item)[1]) for item in samples)
    return sorted(times)


def holds_pending(window: Window, pending: list[datetime]) -> bool:
    index = bisect_left(pending, window.start)
    return index < len(pending) and pending[index] < window.end


def settle_due(
    now: datetime | None = None, until: datetime | None = None, limit: int = 1000
) -> list[Epoch]:
    """Settle, in order, every epoch that is due (ending by `until`, if given); at most `limit`.

    Stops at the first epoch that is not due yet or still has pending samples.
    """
    now = now or timezone.now()
    cursor = first_cursor()
    if cursor is None:
        return []
    pending = pending_sample_times()
    settled = []
    for _ in range(limit):
        window = window_from(cursor)
        if window.due_at > now or (until is not None and window.end > until):
            break
        if holds_pending(window, pending):
            log.info("epoch %s waits for pending batches", window.start.isoformat())
            break
        epoch = settle(window, now)
        if epoch is not None:
            settled.append(epoch)
        cursor = window.end
    return settled


# --- units and pools ------------------------------------------------------------------------


def compute_units(usage: Usage, weight) -> Fraction:
    """Σ busy seconds * utilization/100 * weight."""
    return usage.busy_util_us / 100 / US_PER_S * Fraction(weight)


def idle_units(usage: Usage) -> Fraction:
    """Σ idle seconds * available committed GiB (GiB·s)."""
    return Fraction(usage.idle_mib_us, MIB_PER_GIB * US_PER_S)


def on_common_denominator(units: dict) -> tuple[dict, int]:
    """Rationals as integer numerators over one common denominator, and that denominator:
    settlement's sums and shares in integers (units have few distinct denominators)."""
    common = lcm(*{u.denominator for u in units.values()}) if units else 1
    return {key: u.numerator * (common // u.denominator) for key, u in units.items()}, common


def split_pool(pool_wei: int, units: dict[str, Fraction]) -> dict[str, int]:
    """Each key's `floor(pool * units / Σunits)` plus one leftover wei each by largest
    remainder (ties by key ascending): the amounts add up to the pool exactly.

    With no units at all, everybody gets 0 and the pool stays unallocated.
    """
    scaled, _common = on_common_denominator(units)
    total = sum(scaled.values())
    if total == 0 or pool_wei == 0:
        return dict.fromkeys(units, 0)
    amounts, remainders = {}, {}
    for key, share in scaled.items():
        amounts[key], remainders[key] = divmod(pool_wei * share, total)
    leftover = pool_wei - sum(amounts.values())
    for key in sorted(units, key=lambda k: (-remainders[k], k))[:leftover]:
        amounts[key] += 1
    return amounts


# --- holding out ----------------------------------------------------------------------------


WHAT_TO_DO = {
    HeldOut.Reason.UNVERIFIED: " Keep the agent running: it answers challenges by itself, and "
    "`omnitensor-agent verify` tests the GPU on the machine.",
    HeldOut.Reason.VERIFICATION_FAILED: " A new challenge follows within "
    "GPU_VERIFICATION_RETRY_S; run `omnitensor-agent verify` on the machine to see why.",
}


def held_out_reasons(gpus: dict, at: datetime) -> dict[int, tuple[str, str]]:
    """Physical GPU pk → (reason, detail) for those that earn nothing in the epoch ending
    `at`; the first reason found wins: verification, a failed probe, a flag, disabled."""
    reasons = {}
    physical = sorted({g.mig_parent_id or pk for pk, g in gpus.items()})
    for pk, standing in challenges.standing(physical, at).items():
        if not standing.verified:
            retry = f"{settings.GPU_VERIFICATION_RETRY_S // 60} minutes"
            todo = WHAT_TO_DO[standing.reason].replace("GPU_VERIFICATION_RETRY_S", retry)
            reasons[pk] = (standing.reason, standing.detail + todo)
    for pk in failed_probes(physical, at):
        reasons.setdefault(
            pk,
            (HeldOut.Reason.PROBE_FAILED, "The network's scheduler could not allocate the "
             "memory it offers; it earns again after a successful probe."),
        )  # fmt: skip
    flagged = (
        GpuFlag.objects.filter(gpu_id__any=list(gpus), cleared_at__isnull=True)
        .order_by("created_at")
        .values_list("gpu_id", "reason")
    )
    for gpu_id, reason in flagged:
        physical = gpus[gpu_id].mig_parent_id or gpu_id
        label = GpuFlag.Reason(reason).label if reason in GpuFlag.Reason.values else reason
        reasons.setdefault(physical, (HeldOut.Reason.FLAGGED, f"Open flag: {label}."))
    for gpu in gpus.values():
        if not gpu.enabled:
            physical = gpu.mig_parent_id or gpu.pk
            what = "This GPU" if physical == gpu.pk else f"Its MIG instance {gpu.uuid}"
            reasons[physical] = (HeldOut.Reason.DISABLED, f"{what} was disabled by its owner.")
    return reasons


def failed_probes(gpu_ids: list[int], at: datetime) -> list[int]:
    """GPUs whose last scheduler probe before `at` failed."""
    last_ok = Subquery(
        Probe.objects.filter(gpu_id=OuterRef("pk"), at__lt=at)
        .order_by("-at", "-pk")
        .values("ok")[:1]
    )
    rows = GPU.objects.filter(pk__any=gpu_ids).annotate(last_ok=last_ok).filter(last_ok=False)
    return list(rows.values_list("pk", flat=True))


# --- settling one epoch ---------------------------------------------------------------------


def seconds(us: int) -> str:
    """Microseconds as exact decimal seconds (`decimal_string` of us / 10^6)."""
    whole, part = divmod(us, US_PER_S)
    if us < 0:
        return decimal_string(Fraction(us, US_PER_S))
    return f"{whole}.{part:06d}".rstrip("0") if part else str(whole)


def is_settled(window: Window) -> bool:
    return Epoch.objects.filter(start=window.start).exists()


def settle(window: Window, now: datetime | None = None, method: str = "auto") -> Epoch | None:
    """Settle one epoch; None when it is settled already (by us earlier, or another worker)."""
    now = now or timezone.now()
    if is_settled(window):
        return None
    started = time.perf_counter()
    max_gap = timedelta(seconds=window.policy.max_gap_s)
    usage, method = usage_of(window, max_gap, now, method)

    gpus = _gpus_of(list(usage))
    reasons = held_out_reasons(gpus, window.end)
    earning = {pk: u for pk, u in usage.items() if pk not in reasons and pk in gpus}
    paid = _Payout.of(window.policy, earning, gpus)
    held = [
        HeldOut(
            gpu_id=pk,
            contributor_id=gpus[pk].owner_id,
            reason=reason,
            detail=detail,
            covered_seconds=seconds(usage[pk].covered_us),
        )
        for pk, (reason, detail) in reasons.items()
        if pk in usage and pk in gpus
    ]
    epoch = _record(window, paid, held, method, now)
    if epoch is None:
        log.info("epoch %s was settled by someone else", window.start.isoformat())
        return None
    metrics.epoch_settled(time.perf_counter() - started)
    log.info(
        "settled epoch %s: %s entries, %s held out (%s)",
        window.start.isoformat(),
        len(paid.entries),
        len(held),
        method,
    )
    return epoch


@dataclass(frozen=True, slots=True)
class SettledGpu:
    """What settlement reads of a GPU (a model instance each would cost more than the rest)."""

    pk: int
    uuid: str
    name: str
    owner_id: int
    mig_parent_id: int | None
    enabled: bool
    effective_committed_mib: int


def _gpus_of(physical: list[int]) -> dict[int, SettledGpu]:
    """The GPUs of the usage and their MIG instances."""
    rows = GPU.objects.filter(Q(pk__any=physical) | Q(mig_parent_id__any=physical)).values_list(
        "pk", "uuid", "name", "node__owner_id", "mig_parent_id", "enabled",
        "committed_memory_mib", "memory_total_mib",
    )  # fmt: skip
    return {
        pk: SettledGpu(pk, uuid, name, owner, parent, enabled,
                       total if committed is None else min(committed, total))
        for pk, uuid, name, owner, parent, enabled, committed, total in rows
    }  # fmt: skip


def usage_of(window: Window, max_gap: timedelta, now: datetime, method: str = "auto"):
    """(usage per physical GPU, the method used): from the accumulators when they hold the
    whole epoch (`auto`, `accumulators`), else from every raw sample (`sql`, `python`)."""
    if method in ("auto", "accumulators"):
        if accumulators.complete_for(window.start, max_gap):
            outcome = accumulators.usage(window.start, window.end, max_gap, now)
            if outcome is not None:
                if outcome.from_raw:
                    log.info(
                        "epoch %s: %s of %s GPUs from raw samples",
                        window.start.isoformat(),
                        outcome.from_raw,
                        len(outcome.usage),
                    )
                return outcome.usage, "accumulators"
        method = "auto"
    return usage_for(window.start, window.end, max_gap, now, method)


@dataclass(slots=True)
class LedgerRow:
    """A `RewardEntry` about to be written (`portal.lib.db.insert_many` takes its fields)."""

    gpu_id: int
    contributor_id: int
    kind: str
    units: str
    amount_wei: int
    inputs: dict
    epoch_id: int | None = None


@dataclass
class _Payout:
    """What each pool pays the earning GPUs of one epoch, as unsaved ledger entries."""

    entries: list[LedgerRow]
    compute_total: Fraction
    idle_total: Fraction
    compute_paid_wei: int
    idle_paid_wei: int

    @classmethod
    def of(cls, policy, earning: dict, gpus: dict) -> "_Payout":
        catalog = Catalog.load()
        compute, idle, weights = {}, {}, {}
        for pk, use in earning.items():
            weights[pk] = catalog.weight_for(gpus[pk].name)
            if use.busy_us:
                compute[pk] = compute_units(use, weights[pk])
            if use.idle_us:
                idle[pk] = idle_units(use)
        uuid_of = {pk: gpus[pk].uuid for pk in earning}
        compute_paid = split_pool(
            policy.compute_pool_wei, {uuid_of[pk]: u for pk, u in compute.items()}
        )
        idle_paid = split_pool(policy.idle_pool_wei, {uuid_of[pk]: u for pk, u in idle.items()})
        # Totals and shares in integers, over each pool's common denominator.
        compute_scaled, compute_common = on_common_denominator(compute)
        idle_scaled, idle_common = on_common_denominator(idle)
        compute_total = Fraction(sum(compute_scaled.values()), compute_common)
        idle_total = Fraction(sum(idle_scaled.values()), idle_common)
        # What every entry of a pool repeats, written once.
        pools = {
            RewardEntry.Kind.COMPUTE: (str(policy.compute_pool_wei), compute_scaled,
                                       decimal_string(compute_total), compute_paid),
            RewardEntry.Kind.IDLE: (str(policy.idle_pool_wei), idle_scaled,
                                    decimal_string(idle_total), idle_paid),
        }  # fmt: skip
        entries = []
        for kind, units_of in ((RewardEntry.Kind.COMPUTE, compute), (RewardEntry.Kind.IDLE, idle)):
            pool_wei, scaled, total_text, paid = pools[kind]
            scaled_total = sum(scaled.values())
            for pk, units in units_of.items():
                text = decimal_string(units)
                use = earning[pk]
                if kind == RewardEntry.Kind.COMPUTE:
                    inputs = _compute_inputs(use, weights[pk])
                else:
                    inputs = _idle_inputs(use, text, gpus[pk])
                inputs.update(pool_wei=pool_wei, total_units=total_text,
                              share=_share(scaled[pk], scaled_total), units=text)  # fmt: skip
                entries.append(
                    LedgerRow(pk, gpus[pk].owner_id, kind, text, paid[uuid_of[pk]], inputs)
                )
        return cls(
            entries,
            compute_total,
            idle_total,
            sum(compute_paid.values()),
            sum(idle_paid.values()),
        )


# Besides what the statement shows, each entry keeps the exact sums its units come from
# (`covered_seconds`, `utilization_pct_seconds`), so an epoch's manifest (rewards.manifests)
# can be recomputed to the wei by anyone.
def _compute_inputs(use, weight) -> dict:
    return {
        "seconds": seconds(use.busy_us),
        "covered_seconds": seconds(use.covered_us),
        "avg_utilization_pct": rounded_decimal(use.busy_util_us / use.busy_us, places=6),
        "utilization_pct_seconds": decimal_string(use.busy_util_us / US_PER_S),
        "null_utilization_seconds": seconds(use.null_util_us),
        "weight": decimal_string(Fraction(weight)),
        "gib_seconds": None,
    }


def _idle_inputs(use, gib_seconds: str, gpu: SettledGpu) -> dict:
    return {
        "seconds": seconds(use.idle_us),
        "covered_seconds": seconds(use.covered_us),
        "avg_utilization_pct": None,
        "weight": None,
        "gib_seconds": gib_seconds,
        "committed_mib": gpu.effective_committed_mib,
    }


def _record(window: Window, paid: _Payout, held: list, method: str, now) -> Epoch | None:
    """The epoch, its entries, held-out rows and day totals in one transaction; None when
    another settlement of the same window won (the epoch's start is unique)."""
    policy = window.policy
    entries = paid.entries
    try:
        with transaction.atomic():
            epoch = Epoch.objects.create(
                start=window.start,
                end=window.end,
                policy=policy if policy.pk else None,
                grace_s=policy.grace_s,
                max_gap_s=policy.max_gap_s,
                compute_pool_wei=policy.compute_pool_wei,
                idle_pool_wei=policy.idle_pool_wei,
                compute_units=decimal_string(paid.compute_total),
                idle_units=decimal_string(paid.idle_total),
                compute_paid_wei=paid.compute_paid_wei,
                idle_paid_wei=paid.idle_paid_wei,
                compute_unallocated_wei=policy.compute_pool_wei - paid.compute_paid_wei,
                idle_unallocated_wei=policy.idle_pool_wei - paid.idle_paid_wei,
                gpu_count=len({e.gpu_id for e in entries}),
                held_out_count=len(held),
                method=method,
            )
            for row in [*entries, *held]:
                row.epoch_id = epoch.pk
            db.insert_many(RewardEntry, entries)
            db.insert_many(HeldOut, held)
            add_to_earning_days(window.start, entries)
            won = Epoch.objects.filter(pk=epoch.pk, status=Epoch.Status.SETTLING).update(
                status=Epoch.Status.SETTLED, settled_at=now
            )
            if won != 1:
                raise IntegrityError("the epoch changed status while being settled")
    except IntegrityError:
        return None
    epoch.refresh_from_db()
    return epoch


def _share(units: int, total: int) -> str:
    """units / total of a pool (both over its common denominator), 18 decimals."""
    return rounded_ratio(units, total) if total else "0"
