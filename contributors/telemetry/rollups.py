"""Per-minute and per-hour rollups of GPU telemetry.

Charts of a day read minutes and charts of a month read hours, so no request ever scans raw
samples beyond the last hour. Two writers keep them, both holding the GPUs' rows locked, so
never at once for the same GPU:

- the ingestion worker (`store`), for samples newer than everything stored for their GPU
  (agents report in order, so nearly all of them): it adds what they change, computed from the
  samples in hand (`deltas_in_order`, `add_deltas`). A sample covers [ts, min(next, ts +
  max_gap)); the newest is counted to ts + max_gap, and the next batch takes back what its
  first sample cuts.
- `run`, the periodic task (every ROLLUP_EVERY_S), for GPUs that got an older sample (a spool
  replayed after an outage, a resent batch): the worker notes the span (`RollupDue`) in the
  transaction that stores the samples, and `run` recomputes every minute the span can change
  from the raw samples around it (a sample changes its own minute, the coverage of the one
  before it and at most `max_gap` into the next minute), then moves each hour by how much its
  minutes changed. On PostgreSQL that is one SQL statement for all the spans; on SQLite the
  same arithmetic in Python, hours summed from their minutes.

Either way a minute row ends up exactly what its samples say, and an hour the sum of its
minutes; hypothesis checks both against a reference in any arrival order (tests/test_series).
Only one `run` works at a time (an advisory lock on PostgreSQL, the single writer on SQLite).
"""

from collections import defaultdict
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction

from contributors.models import GpuHour, GpuMinute, Sample
from contributors.telemetry.sql import backend
from contributors.telemetry.sql.common import ROLLUP_COLUMNS, ROLLUP_MAXIMA

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
_ADDITIVE = tuple(c for c in ROLLUP_COLUMNS if c not in ROLLUP_MAXIMA)
_MAXIMA = tuple(c for c in ROLLUP_COLUMNS if c in ROLLUP_MAXIMA)
_LOCK_KEY = 0x0F1A_0001  # pg_advisory_xact_lock key of the rollup run


_ZERO = timedelta(0)


def floor_to(moment: datetime, period: timedelta) -> datetime:
    """The start of the UTC minute or hour (`period`) that holds `moment`, in UTC."""
    if moment.utcoffset() == _ZERO:  # the drains' times: cut the fields, no arithmetic
        if period == MINUTE:
            return moment.replace(second=0, microsecond=0, tzinfo=UTC, fold=0)
        if period == HOUR:
            return moment.replace(minute=0, second=0, microsecond=0, tzinfo=UTC, fold=0)
    seconds = int(period.total_seconds())
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)


@dataclass
class Agg:
    """One rollup row in the making (the columns of `GpuMinute` and `GpuHour`)."""

    samples: int = 0
    online_s: float = 0.0
    n_util: int = 0
    sum_util: float = 0.0
    max_util: float | None = None
    sum_mem: float = 0.0
    max_mem: int | None = None
    n_temp: int = 0
    sum_temp: float = 0.0
    max_temp: float | None = None
    n_power: int = 0
    sum_power: float = 0.0
    max_power: float | None = None

    def add_sample(self, util, mem, temp, power) -> None:
        self.samples += 1
        self.sum_mem += mem
        self.max_mem = mem if self.max_mem is None else max(self.max_mem, mem)
        if util is not None:
            self.n_util += 1
            self.sum_util += util
            self.max_util = util if self.max_util is None else max(self.max_util, util)
        if temp is not None:
            self.n_temp += 1
            self.sum_temp += temp
            self.max_temp = temp if self.max_temp is None else max(self.max_temp, temp)
        if power is not None:
            self.n_power += 1
            self.sum_power += power
            self.max_power = power if self.max_power is None else max(self.max_power, power)

    def add(self, values: dict) -> None:
        """Add another row's values (its columns by name: a row read as a dict, or another
        `Agg`'s `vars()`): sums and counts add up, maxima keep the larger."""
        for name in _ADDITIVE:
            setattr(self, name, getattr(self, name) + values[name])
        for name in _MAXIMA:
            value, current = values[name], getattr(self, name)
            if value is not None and (current is None or value > current):
                setattr(self, name, value)

    def values(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def minutes_from_samples(rows, minutes: set[datetime], max_gap: timedelta) -> dict:
    """Exact minute aggregates for `minutes`, from one GPU's samples (ts ascending) around them."""
    out = {minute: Agg() for minute in minutes}
    for index, (ts, util, mem, temp, power) in enumerate(rows):
        minute = floor_to(ts, MINUTE)
        if minute in out:
            out[minute].add_sample(util, mem, temp, power)
        end = ts + max_gap
        if index + 1 < len(rows):
            end = min(end, rows[index + 1][0])
        # Spread the covered interval [ts, end) over the minutes it touches.
        cursor = ts
        while cursor < end:
            bucket = floor_to(cursor, MINUTE)
            stop = min(end, bucket + MINUTE)
            if bucket in out:
                out[bucket].online_s += (stop - cursor).total_seconds()
            cursor = stop
    return out


def _spread(out: dict[int, Agg], start: float, end: float, sign: float) -> None:
    """Add (or with sign -1 take away) the covered interval [start, end), in epoch seconds,
    minute by minute."""
    cursor = start
    while cursor < end:
        bucket = int(cursor // 60) * 60
        stop = min(end, bucket + 60)
        agg = out.get(bucket)
        if agg is None:
            agg = out[bucket] = Agg()
        agg.online_s += sign * (stop - cursor)
        cursor = stop


def deltas_in_order(previous: datetime | None, rows: list, max_gap: timedelta) -> dict:
    """What appending `rows` (one GPU's new samples, ts ascending, all after `previous`, its
    newest stored sample) changes in its minutes: their own values and coverage, and the end
    of `previous`'s coverage, which was counted to previous + max_gap while it was the last.
    The newest row is counted the same way, to be corrected when the next one comes.

    Works in epoch seconds (this runs for every sample the portal takes)."""
    gap = max_gap.total_seconds()
    out: dict[int, Agg] = {}
    times = [row[0].timestamp() for row in rows]
    if previous is not None:
        before = previous.timestamp()
        if times[0] < before + gap:
            _spread(out, times[0], before + gap, -1.0)
    last = len(rows) - 1
    for index, (_, util, mem, temp, power) in enumerate(rows):
        ts = times[index]
        minute = int(ts // 60) * 60
        agg = out.get(minute)
        if agg is None:
            agg = out[minute] = Agg()
        agg.add_sample(util, mem, temp, power)
        end = ts + gap if index == last else min(ts + gap, times[index + 1])
        _spread(out, ts, end, 1.0)
    return {datetime.fromtimestamp(minute, tz=UTC): agg for minute, agg in out.items()}


def add_deltas(deltas: dict[tuple[int, datetime], Agg]) -> None:
    """Add minute changes to their minutes and their hours (one statement each).

    Called by the ingestion worker with the GPUs' rows locked, so that no other writer of these
    GPUs' rollups runs in between.
    """
    if not deltas:
        return
    hours: dict[tuple[int, datetime], Agg] = {}
    for (gpu, minute), agg in deltas.items():
        total = hours.get((gpu, floor_to(minute, HOUR)))
        if total is None:
            total = hours[(gpu, floor_to(minute, HOUR))] = Agg()
        total.add(vars(agg))
    _add(GpuMinute, deltas)
    _add(GpuHour, hours)


def _add(model, rows: dict[tuple[int, datetime], Agg]) -> None:
    keys = sorted(rows)
    backend().add_to_rollups(
        model,
        [
            [gpu for gpu, _ in keys],
            [start for _, start in keys],
            *([getattr(rows[key], c) for key in keys] for c in ROLLUP_COLUMNS),
        ],
    )


def run(max_spans: int | None = None) -> int:
    """Redo the rollups of every noted span; returns how many spans were taken."""
    max_spans = max_spans or settings.ROLLUP_MAX_SPANS
    taken = 0
    while True:
        with transaction.atomic():
            sql = backend()
            if not sql.only_run(_LOCK_KEY):
                return taken
            due = sql.take_due(max_spans)
            if not due:
                return taken
            ranges = minute_ranges(due)
            # Held in id order, as the ingestion worker takes them: while a run redoes a GPU's
            # minutes from its raw samples, no worker adds to them (see `add_deltas`).
            sql.lock_gpus(sorted({gpu for gpu, _, _ in ranges}))
            if not sql.redo_rollups(ranges, settings.COVERAGE_MAX_GAP_S):
                _redo_in_python(ranges)
        taken += len(due)
        if len(due) < max_spans:
            return taken


def minute_ranges(spans) -> list[tuple[int, datetime, datetime]]:
    """(gpu, first minute, last minute) to redo for sample spans, merged per GPU."""
    max_gap = timedelta(seconds=settings.COVERAGE_MAX_GAP_S)
    per_gpu: dict[int, list[list[datetime]]] = defaultdict(list)
    for gpu, first, last in spans:
        per_gpu[gpu].append([floor_to(first - max_gap, MINUTE), floor_to(last + max_gap, MINUTE)])
    merged = []
    for gpu, ranges in sorted(per_gpu.items()):
        ranges.sort()
        current = ranges[0]
        for lo, hi in ranges[1:]:
            if lo <= current[1] + MINUTE:
                current[1] = max(current[1], hi)
            else:
                merged.append((gpu, current[0], current[1]))
                current = [lo, hi]
        merged.append((gpu, current[0], current[1]))
    return merged


def _hours_of(ranges) -> list[tuple[int, datetime]]:
    hours = set()
    for gpu, lo, hi in ranges:
        hour = floor_to(lo, HOUR)
        while hour <= hi:
            hours.add((gpu, hour))
            hour += HOUR
    return sorted(hours)


def _redo_in_python(ranges) -> None:
    """What the PostgreSQL statement does, for SQLite: minutes from the raw samples, then each
    hour summed from its minutes."""
    max_gap = timedelta(seconds=settings.COVERAGE_MAX_GAP_S)
    rows = []
    for gpu, lo, hi in ranges:
        raw = list(
            Sample.objects.filter(gpu_id=gpu, ts__gte=lo - max_gap, ts__lt=hi + MINUTE + max_gap)
            .order_by("ts")
            .values_list("ts", "utilization_gpu_pct", "memory_used_mib", "temperature_c", "power_w")
        )
        wanted = set()
        minute = lo
        while minute <= hi:
            wanted.add(minute)
            minute += MINUTE
        for minute, agg in minutes_from_samples(raw, wanted, max_gap).items():
            if agg.samples or agg.online_s:
                rows.append(GpuMinute(gpu_id=gpu, start=minute, **agg.values()))
    _replace(GpuMinute, rows)

    hours = []
    for gpu, hour in _hours_of(ranges):
        total = Agg()
        for values in GpuMinute.objects.filter(
            gpu_id=gpu, start__gte=hour, start__lt=hour + HOUR
        ).values(*ROLLUP_COLUMNS):
            total.add(values)
        if total.samples or total.online_s:
            hours.append(GpuHour(gpu_id=gpu, start=hour, **total.values()))
    _replace(GpuHour, hours)


def _replace(model, rows) -> None:
    model.objects.bulk_create(
        rows,
        batch_size=500,
        update_conflicts=True,
        unique_fields=["gpu", "start"],
        update_fields=list(ROLLUP_COLUMNS),
    )
