"""Usage from accumulators: settlement in O(GPUs), not O(samples).

The drains (`contributors.telemetry.store`) add each GPU's in-order samples, under its row
lock, to one `UsageAccumulator` row per (device, epoch, job the samples named), the way they
add them to the minute and hour rollups:

- a sample covers `[ts, min(next_ts, ts + max_gap))`, cut at epoch boundaries (each epoch with
  its own policy's max_gap, on the grid `settlement.window_from` cuts: `Grid`);
- the newest sample of a device is counted up to `ts + max_gap`; the next one takes back what
  it cuts (`Deltas.add_in_order`), so the rows are exact at any moment for what is stored;
- a sample older than its GPU's newest marks the epochs it can change `dirty`.

Settlement (`usage`) then reads the rows of its epoch and, per physical GPU, gives exactly what
`rewards.usage.python_usage` (the reference) gives from the raw samples:

- a group that named an attested job of the same physical GPU is busy when the job spans all
  of its covered time, idle when the job is outside it; a job that starts or ends inside the
  group's time (attested late, ended early) cannot be split from sums;
- idle MiB·µs are Σ µs·min(committed, available); with committed at or below the group's
  least available MiB that is µs·committed, at or above its most available it is Σ
  µs·available; a commitment (or probe cap) in between cannot be split from sums either.

Those cases and dirty rows fall back to the exact raw computation for those GPUs alone. When
the epoch grid changes (a stored policy added, edited or deleted while samples it governs
exist, or the settings' REWARD_EPOCH_S / REWARD_MAX_GAP_S), every epoch those samples can reach
settles from raw samples (`distrust_until_now`); a row cut on another grid than its epoch's
makes that epoch do so too.
"""

import decimal
import logging
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from contributors.models import GPU
from portal.lib import db
from rewards.models import AccumulatedSince, RewardPolicy, UsageAccumulator
from rewards.usage import (
    Usage,
    database_usage,
    load_devices,
    load_jobs,
    micros,
    probe_caps,
    readings_in,
    sql_usage,
)

log = logging.getLogger(__name__)

UNIX = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)
# Utilization sums are exact decimals: a rounding would raise, never pass silently.
_EXACT = decimal.Context(
    prec=200, traps=[decimal.Inexact, decimal.Rounded, decimal.InvalidOperation]
)
_ZERO = decimal.Decimal(0)
_UTIL_DECIMALS: dict[float, decimal.Decimal] = {}


def to_us(moment: datetime) -> int:
    return (moment - UNIX) // ONE_US


def from_us(value: int) -> datetime:
    return UNIX + timedelta(microseconds=value)


def util_decimal(value: float) -> decimal.Decimal:
    """The utilization as the agent wrote it (its shortest repr), as `usage.utilization`."""
    found = _UTIL_DECIMALS.get(value)
    if found is None:
        found = decimal.Decimal(repr(float(value)))
        if len(_UTIL_DECIMALS) < 100_000:
            _UTIL_DECIMALS[value] = found
    return found


# --- the epoch grid -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Span:
    """An epoch, in microseconds since the Unix epoch, with its policy's max_gap."""

    start: int
    end: int
    gap: int


class Grid:
    """Epochs as `settlement.window_from` cuts them: each policy's grid from its
    `effective_from`, cut where the next policy takes over."""

    def __init__(self, policies: list[tuple[int | None, int, int]]):
        # (effective_from µs or None for the default, epoch length µs, max_gap µs), in order
        self.policies = policies
        self.froms = [float("-inf") if p[0] is None else p[0] for p in policies]
        self.max_gap = max(p[2] for p in policies)
        self._last = Span(0, 0, 0)  # the epoch `at` found last: samples come in runs

    @classmethod
    def load(cls) -> "Grid":
        default = RewardPolicy.default()
        policies = [(None, default.epoch_length_s * 10**6, default.max_gap_s * 10**6)]
        rows = RewardPolicy.objects.order_by("effective_from").values_list(
            "effective_from", "epoch_length_s", "max_gap_s"
        )
        policies += [(to_us(at), length * 10**6, gap * 10**6) for at, length, gap in rows]
        return cls(policies)

    def at(self, t: int) -> Span:
        """The epoch that holds the moment `t`."""
        last = self._last
        if last.start <= t < last.end:  # epochs do not overlap: the same one
            return last
        index = bisect_right(self.froms, t) - 1
        effective, length, gap = self.policies[index]
        aligned = t - t % length
        start = aligned if effective is None else max(aligned, effective)
        end = aligned + length
        if index + 1 < len(self.policies):
            end = min(end, self.policies[index + 1][0])
        self._last = Span(start, end, gap)
        return self._last

    def pieces(self, ts: int, until: int | None):
        """(epoch, a, b) for each epoch whose settlement reads the sample at `ts` (as
        `usage.readings_in`: `start - max_gap < ts < end`) and the part `[a, b)` of it the
        sample covers (maybe empty), the sample's next one at `until` (None: not yet, so up
        to ts + max_gap)."""
        span = self.at(ts)
        while True:
            if span.start - span.gap < ts:  # (the first span holds ts: always)
                b = ts + span.gap if until is None else min(until, ts + span.gap)
                a = max(ts, span.start)
                yield span, a, max(a, min(b, span.end))
            # The next epoch starts where this one ends; it reads ts only if a max_gap reaches
            # back to it (a later policy's larger one can reach past an epoch that does not).
            if span.end - self.max_gap >= ts:
                return
            span = self.at(span.end)


# --- what the drains add ---------------------------------------------------------------------


Window = tuple[int, int | None] | None  # an attested job's (start, end or None if running)
_FOREVER = float("inf")


def _end(window) -> float:
    return _FOREVER if window[1] is None else window[1]


def same_busy(seen: Window, now: Window, first: int, last: int, busy: int) -> bool:
    """Whether time within [first, last) that was split into busy and idle under the job
    window `seen` (None: no attested job on this GPU) splits the same under `now`."""
    if seen == now:
        return True
    if seen is None:  # all of it was idle: still so if the job is outside it
        return now[0] >= last or _end(now) <= first
    if now is None:
        return busy == 0
    if seen[0] != now[0]:
        return busy == 0 and (now[0] >= last or _end(now) <= first)
    return min(_end(seen), _end(now)) >= last  # the same start; ends beyond the time


class Delta:
    """What one drain changes in one accumulator row."""

    __slots__ = (
        "avail", "busy", "busy_avail", "cap", "covered", "dirty", "first", "hi", "last", "lo",
        "null", "span", "util", "window",
    )  # fmt: skip

    def __init__(self, span: Span, window: Window):
        self.span = span
        self.window = window
        self.covered = self.busy = self.null = self.avail = self.busy_avail = 0
        self.first = self.last = self.cap = None  # µs since the Unix epoch
        self.util = _ZERO
        self.lo = self.hi = None
        self.dirty = False

    def _busy(self, a: int, b: int, util, avail: int, sign: int) -> None:
        """The part of [a, b) inside the attested job, added (sign 1) or taken back (-1)."""
        window = self.window
        if window is None:
            return
        length = min(b, _end(window)) - max(a, window[0])
        if length <= 0:
            return
        length = int(length) * sign
        self.busy += length
        self.busy_avail += length * avail
        if util is None:
            self.null += length
        else:
            self.util = _EXACT.add(self.util, _EXACT.multiply(util_decimal(util), length))

    def add(self, a: int, b: int, util, avail: int) -> None:
        if b <= a:
            return
        length = b - a
        self.covered += length
        self.first = a if self.first is None else min(self.first, a)
        self.last = b if self.last is None else max(self.last, b)
        self.avail += length * avail
        self.lo = avail if self.lo is None else min(self.lo, avail)
        self.hi = avail if self.hi is None else max(self.hi, avail)
        self._busy(a, b, util, avail, 1)

    def take(self, a: int, b: int, util, avail: int) -> None:
        """Take back `[a, b)` of the newest sample counted so far: its row's time ends at a."""
        length = b - a
        self.covered -= length
        self.cap = a if self.cap is None else min(self.cap, a)
        self.avail -= length * avail
        self._busy(a, b, util, avail, -1)


@dataclass(frozen=True, slots=True)
class Reading:
    """What accumulators need of a sample: its time (µs), utilization, available MiB, job."""

    ts: int
    util: float | None
    avail: int
    job_id: str


@dataclass(frozen=True, slots=True)
class Job:
    """An attested job as the accumulators split time by it (µs since the Unix epoch)."""

    physical: int
    start: int
    end: int | None  # None while it runs


def jobs_named(job_ids) -> dict[str, Job]:
    """The attested jobs of these ids, now."""
    from rewards.models import Job as JobRow

    rows = JobRow.objects.filter(job_id__in=list(job_ids)).values_list(
        "job_id", "gpu_id", "gpu__mig_parent_id", "started_at", "ended_at"
    )
    return {
        job_id: Job(parent or gpu, to_us(started), None if ended is None else to_us(ended))
        for job_id, gpu, parent, started, ended in rows
    }


class Deltas:
    """The changes of one drain (or rebuild), by (device, epoch start, job)."""

    def __init__(self, grid: Grid, jobs: dict[str, Job]):
        self.grid = grid
        self.jobs = jobs
        self.rows: dict[tuple[int, int, str], Delta] = {}

    def _row(self, gpu: int, physical: int, span: Span, job_id: str) -> Delta:
        key = (gpu, span.start, job_id)
        row = self.rows.get(key)
        if row is None:
            job = self.jobs.get(job_id) if job_id else None
            window = (job.start, job.end) if job is not None and job.physical == physical else None
            row = self.rows[key] = Delta(span, window)
        return row

    def add_in_order(
        self, gpu: int, physical: int, previous: Reading | None, readings: list[Reading]
    ) -> None:
        """`readings` sorted by time, all newer than `previous` (the device's newest stored
        sample, counted up to its ts + max_gap so far); `physical`: the GPU they count for."""
        grid = self.grid
        if previous is not None:
            cut = {span.start: b for span, _a, b in grid.pieces(previous.ts, readings[0].ts)}
            for span, a, b in grid.pieces(previous.ts, None):
                kept = cut.get(span.start, a)
                if kept < b:
                    self._row(gpu, physical, span, previous.job_id).take(
                        kept, b, previous.util, previous.avail
                    )
        last = len(readings) - 1
        for index, reading in enumerate(readings):
            until = readings[index + 1].ts if index < last else None
            for span, a, b in grid.pieces(reading.ts, until):
                self._row(gpu, physical, span, reading.job_id).add(
                    a, b, reading.util, reading.avail
                )

    def mark_dirty(self, gpu: int, first_ts: int, last_ts: int) -> None:
        """Samples from first_ts to last_ts arrived out of order: every epoch they (and the
        samples before them) can cover is recomputed from the raw samples at settlement."""
        t = first_ts - self.grid.max_gap
        while t < last_ts + self.grid.max_gap:
            span = self.grid.at(t)
            self._row(gpu, gpu, span, "").dirty = True
            t = span.end


_VALUES = ("covered_us", "first_us", "last_us", "busy_us", "busy_util_us", "busy_null_us",
           "avail_mib_us", "busy_avail_mib_us", "min_avail_mib", "max_avail_mib", "job_from_us",
           "job_until_us", "dirty")  # fmt: skip


def _window_of(start: int, job_from, job_until) -> Window:
    if job_from is None:
        return None
    return (start + job_from, None if job_until is None else start + job_until)


def write(deltas: Deltas) -> None:
    """Add the deltas to their rows (the caller holds the GPUs' row locks)."""
    if not deltas.rows:
        return
    gpus = sorted({key[0] for key in deltas.rows})
    starts = sorted({key[1] for key in deltas.rows})
    stored = {
        (gpu, to_us(start), job): values
        for gpu, start, job, *values in _stored_rows(gpus, [from_us(s) for s in starts])
    }
    rows = []
    for key, d in deltas.rows.items():
        gpu, start, job = key
        old = stored.get(key)
        first = None if d.first is None else d.first - start
        last = None if d.last is None else d.last - start
        window = d.window
        if old is None:
            covered, busy, util, null = d.covered, d.busy, d.util, d.null
            avail, busy_avail, dirty = d.avail, d.busy_avail, d.dirty
            lo, hi = d.lo or 0, d.hi or 0
            first = 0 if first is None else first
            last = (0 if d.cap is None else d.cap - start) if last is None else last
        else:
            (o_cov, o_first, o_last, o_busy, o_util, o_null, o_avail, o_busy_avail, o_lo, o_hi,
             o_from, o_until, o_dirty, o_end, o_gap) = old  # fmt: skip
            covered, busy = o_cov + d.covered, o_busy + d.busy
            util = _EXACT.add(decimal.Decimal(o_util), d.util)
            null, avail = o_null + d.null, o_avail + d.avail
            busy_avail, dirty = o_busy_avail + d.busy_avail, o_dirty or d.dirty
            # Cut on another grid before: recount this epoch from raw samples, whatever comes.
            dirty = dirty or (o_end, o_gap) != (from_us(d.span.end), d.span.gap // 10**6)
            # The job was attested, ended or moved since: the time counted before must split
            # the same way under what is known now, or the epoch is recounted for this GPU.
            seen = _window_of(start, o_from, o_until)
            if not same_busy(seen, window, start + o_first, start + o_last, o_busy):
                dirty = True
            if d.cap is not None:
                o_last = min(o_last, d.cap - start)
            first = o_first if first is None else min(o_first, first)
            last = o_last if last is None else max(o_last, last)
            if o_cov <= 0:  # nothing counted before: its extremes are placeholders
                o_lo, o_hi = d.lo if d.lo is not None else o_lo, d.hi if d.hi is not None else o_hi
            lo = o_lo if d.lo is None else min(o_lo, d.lo)
            hi = o_hi if d.hi is None else max(o_hi, d.hi)
        rows.append(
            (gpu, from_us(start), from_us(d.span.end), d.span.gap // 10**6, job, covered, first,
             last, busy, str(util), null, avail, busy_avail, lo, hi,
             None if window is None else window[0] - start,
             None if window is None or window[1] is None else window[1] - start, dirty)
        )  # fmt: skip
    _upsert(rows)


_READ = ("gpu_id", "start", "job_id", *_VALUES, "end", "max_gap_s")
_WEI = tuple(_READ.index(name) for name in ("avail_mib_us", "busy_avail_mib_us"))
assert _WEI[1] == _WEI[0] + 1  # `_stored_rows` converts the two side by side


def _stored_rows(gpus: list[int], starts: list[datetime]) -> list[tuple]:
    """The rows of these GPUs and epoch starts, as `_READ`: on PostgreSQL one prepared
    statement read without the ORM (its row objects were a drain's costliest Python)."""
    if connection.vendor != "postgresql":
        return list(
            UsageAccumulator.objects.filter(gpu_id__any=gpus, start__in=starts).values_list(*_READ)
        )
    q = connection.ops.quote_name
    rows = db.fetch(
        f"SELECT {', '.join(q(name) for name in _READ)} "  # noqa: S608 - our names
        f"FROM {q(UsageAccumulator._meta.db_table)} "
        "WHERE gpu_id = ANY(%s::bigint[]) AND start = ANY(%s::timestamptz[])",
        ["{" + ",".join(map(str, gpus)) + "}", starts],  # ids as text: as `__any` sends them
    )
    # numeric comes as Decimal: the sums are integers (WeiField's from_db_value does the same)
    a, b = _WEI
    return [(*row[:a], int(row[a]), int(row[b]), *row[b + 1 :]) for row in rows]


# The columns `write` sends, in its rows' order, with their PostgreSQL types.
_COLUMNS = (
    ("gpu_id", "int8"), ("start", "timestamptz"), ("end", "timestamptz"), ("max_gap_s", "int8"),
    ("job_id", "text"), ("covered_us", "int8"), ("first_us", "int8"), ("last_us", "int8"),
    ("busy_us", "int8"), ("busy_util_us", "text"), ("busy_null_us", "int8"),
    ("avail_mib_us", "numeric"), ("busy_avail_mib_us", "numeric"), ("min_avail_mib", "int8"),
    ("max_avail_mib", "int8"), ("job_from_us", "int8"), ("job_until_us", "int8"),
    ("dirty", "bool"),
)  # fmt: skip


def _upsert(rows: list[tuple]) -> None:
    """Write the merged rows: on PostgreSQL one fixed statement (prepared once per connection)
    with the rows as one JSON parameter, as the drains' other writes; elsewhere Django's."""
    if connection.vendor == "postgresql":
        q = connection.ops.quote_name
        names = ", ".join(q(name) for name, _ in _COLUMNS)
        sets = ", ".join(f"{q(name)} = EXCLUDED.{q(name)}" for name in _VALUES)
        db.fetch(
            f"INSERT INTO {q(UsageAccumulator._meta.db_table)} ({names}) "  # noqa: S608
            f"SELECT * FROM {db.json_rows([(q(n), t) for n, t in _COLUMNS])} "
            f"ON CONFLICT (gpu_id, start, job_id) DO UPDATE SET {sets}",
            [db.rows_json(rows)],
        )
        return
    names = [name for name, _ in _COLUMNS]
    UsageAccumulator.objects.bulk_create(
        [UsageAccumulator(**dict(zip(names, row, strict=True))) for row in rows],
        update_conflicts=True,
        unique_fields=["gpu", "start", "job_id"],
        update_fields=list(_VALUES),
    )


# --- settlement's side -----------------------------------------------------------------------


@dataclass
class Outcome:
    """Usage per physical GPU, and how many GPUs needed their raw samples."""

    usage: dict[int, Usage]
    rows: int
    from_raw: int


def default_grid() -> str:
    """The settings' policy, which accumulated rows were cut on where no stored one applies."""
    default = RewardPolicy.default()
    return f"{default.epoch_length_s}/{default.max_gap_s}"


def complete_for(start: datetime, max_gap: timedelta) -> bool:
    """Whether the accumulators hold every sample an epoch from `start` reads, cut on the grid
    it is settled on."""
    since = AccumulatedSince.objects.first()
    if since is None:
        return False
    if since.grid != default_grid():  # REWARD_EPOCH_S or REWARD_MAX_GAP_S changed
        distrust_until_now(since)
        return False
    return since.at <= start - max_gap


def distrust_until_now(since: AccumulatedSince | None = None) -> None:
    """The epoch grid changed: samples added so far may have been cut on the old one, so
    epochs they can reach settle from raw samples (everything drained from now on is cut on
    the new grid)."""
    since = since or AccumulatedSince.objects.first()
    if since is None:
        return
    reach = timedelta(seconds=settings.TELEMETRY_MAX_AHEAD_S, microseconds=Grid.load().max_gap)
    since.at = max(since.at, timezone.now() + reach)
    since.grid = default_grid()
    since.save(update_fields=["at", "grid"])


def policy_changed(effective_from: datetime) -> None:
    """A stored policy from `effective_from` was added, changed or deleted: if any sample
    was added that an epoch from then on reads, those epochs settle from raw samples."""
    from contributors.models import Sample

    reach = timedelta(microseconds=Grid.load().max_gap)
    if Sample.objects.filter(ts__gt=effective_from - reach).exists():
        distrust_until_now()


def usage(start: datetime, end: datetime, max_gap: timedelta, now: datetime) -> Outcome | None:
    """The epoch's usage from its accumulator rows, GPUs that need it from their raw samples;
    None when the rows were cut on another grid (then the caller reads every raw sample)."""
    gap_s = micros(max_gap) // 10**6
    overlapping = UsageAccumulator.objects.filter(end__gt=start, start__lt=end)
    if overlapping.exclude(start=start, end=end, max_gap_s=gap_s).exists():
        log.warning("epoch %s: accumulators on another grid, reading raw samples", start)
        return None
    rows = list(overlapping.values_list("gpu_id", "job_id", *_VALUES))
    devices = load_devices({r[0] for r in rows}, probe_caps(end))
    origin = to_us(start)
    # A running job counts up to the settlement (`usage.load_jobs`).
    jobs = {
        job_id: (span.physical, (to_us(span.start) - origin, to_us(span.end) - origin))
        for job_id, span in load_jobs(start, end, now).items()
    }
    found: dict[int, Usage] = {}
    utils: dict[int, decimal.Decimal] = {}
    raw: set[int] = set()
    for row in rows:
        gpu, job_id = row[0], row[1]
        (covered, first, last, busy, util, null, avail, busy_avail, lo, hi, job_from,
         job_until, dirty) = row[2:]  # fmt: skip
        device = devices[gpu]
        physical = device.physical
        if dirty:
            raw.add(physical)
            continue
        into = found.setdefault(physical, Usage())
        if covered <= 0:
            if covered < 0:
                raw.add(physical)  # more taken back than counted: never expected, so recount
            continue
        job = jobs.get(job_id) if job_id else None
        window = job[1] if job is not None and job[0] == physical else None
        if not same_busy(_window_of(0, job_from, job_until), window, first, last, busy):
            raw.add(physical)  # attested, ended or moved after its samples were added
            continue
        into.covered_us += covered
        into.busy_us += busy
        if busy:
            utils[physical] = _EXACT.add(utils.get(physical, _ZERO), decimal.Decimal(util))
        into.null_util_us += null
        idle = covered - busy
        if idle and not device.is_instance:
            committed = device.committed_mib
            into.idle_us += idle
            if committed <= lo:
                into.idle_mib_us += idle * committed
            elif committed >= hi:
                into.idle_mib_us += avail - busy_avail
            else:
                raw.add(physical)  # min(committed, available) varies inside the group
    for physical, util in utils.items():
        found[physical].busy_util_us = Fraction(util)  # one exact sum each, made rational once
    for physical in raw:
        found.pop(physical, None)
    if raw:
        found.update(raw_usage(start, end, max_gap, now, raw))
    return Outcome(found, len(rows), len(raw))


def raw_usage(start, end, max_gap, now, physical: set[int]) -> dict[int, Usage]:
    """The exact usage of some physical GPUs from their raw samples (instances included),
    read through their (gpu, ts) index: one SQL pass on PostgreSQL, the reference elsewhere."""
    ids = GPU.objects.filter(Q(pk__in=physical) | Q(mig_parent_id__in=physical)).values_list(
        "pk", flat=True
    )
    if connection.vendor == "postgresql":
        return sql_usage(start, end, max_gap, now, gpu_ids=list(ids))
    return database_usage(start, end, max_gap, now, gpu_ids=list(ids))


# --- rebuilding from raw samples ---------------------------------------------------------------


def rebuild(start: datetime, end: datetime | None = None, mark_complete: bool = True) -> int:
    """Recompute the accumulators of the epochs from the one holding `start` to `end`
    (default: the newest sample) from the raw samples, as the drains would have added them;
    then, with `mark_complete`, settlement trusts them from `start` on. Returns the rows.

    For an installation upgraded to accumulators (`manage.py rebuild_usage`) and samples
    written outside the drains. Run it with the drains stopped or idle: a drain between the
    delete and the insert would be counted twice.
    """
    from contributors.models import Sample

    grid = Grid.load()
    first = grid.at(to_us(start)).start
    if end is None:
        newest = Sample.objects.order_by("-ts").values_list("ts", flat=True).first()
        end = (newest or start) + timedelta(microseconds=grid.max_gap + 1)
    UsageAccumulator.objects.filter(start__gte=from_us(first), start__lt=end).delete()
    series: dict[int, list[Reading]] = {}
    gap = timedelta(microseconds=grid.max_gap)
    for reading in readings_in(from_us(first), end, gap):
        series.setdefault(reading.device, []).append(
            Reading(
                to_us(reading.ts),
                reading.util,
                reading.total_mib - reading.used_mib,
                reading.job_id,
            )
        )
    deltas = Deltas(grid, jobs_named({r.job_id for rs in series.values() for r in rs} - {""}))
    parents = dict(
        GPU.objects.filter(pk__in=list(series), mig_parent__isnull=False).values_list(
            "pk", "mig_parent_id"
        )
    )
    for gpu, readings in series.items():
        readings.sort(key=lambda r: r.ts)
        deltas.add_in_order(gpu, parents.get(gpu, gpu), None, readings)
    deltas.rows = {k: d for k, d in deltas.rows.items() if k[1] >= first}
    write(deltas)
    if mark_complete:
        since = from_us(first)
        current = AccumulatedSince.objects.first()
        if current is None:
            AccumulatedSince.objects.create(at=since, grid=default_grid())
        else:
            current.at, current.grid = since, default_grid()
            current.save(update_fields=["at", "grid"])
    return len(deltas.rows)


def prune(before: datetime) -> int:
    """Drop the rows of settled epochs that ended before `before` (through the `end` index);
    an epoch not settled yet keeps its rows whatever their age."""
    from rewards.models import Epoch

    settled_until = Epoch.objects.order_by("-end").values_list("end", flat=True).first()
    if settled_until is None:
        return 0
    rows = UsageAccumulator.objects.filter(end__lt=before, end__lte=settled_until)
    return rows.delete()[0]
