"""Per-minute and per-hour rollups of GPU telemetry, maintained as samples arrive.

Charts of a day read minutes and charts of a month read hours, so no request ever scans raw
samples beyond the last hour. The ingestion worker calls `refresh` in the same transaction that
stores a batch:

- every minute the new samples can change is recomputed from the raw samples around it (a new
  sample changes its own minute, the coverage of the sample before it, and at most `max_gap`
  into the next minute), so a minute row is always exactly what its samples say;
- each hour row moves by the difference between a minute's new and old values. Sums, counts and
  covered seconds only grow as samples are added (coverage of a gap split by a new sample never
  shrinks: min(a, g) + min(b, g) >= min(a + b, g)), and maxima only rise, so the hour stays exact.

Running `refresh` twice for the same samples changes nothing: the minutes come out the same and
their difference to the stored rows is zero.
"""

from collections import defaultdict
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection

from contributors.models import GpuHour, GpuMinute, Sample

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
_ADDITIVE = (
    "samples", "online_s", "n_util", "sum_util", "sum_mem",
    "n_temp", "sum_temp", "n_power", "sum_power",
)  # fmt: skip
_MAXIMA = ("max_util", "max_mem", "max_temp", "max_power")


def floor_to(moment: datetime, period: timedelta) -> datetime:
    seconds = int(period.total_seconds())
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)


@dataclass
class Agg:
    """One rollup row in the making."""

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

    def values(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class _Window:
    lo: datetime
    hi: datetime
    minutes: set = field(default_factory=set)


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


def refresh(new_samples: list[Sample]) -> None:
    """Bring the minute and hour rollups up to date with `new_samples` (already stored)."""
    if not new_samples:
        return
    max_gap = timedelta(seconds=settings.COVERAGE_MAX_GAP_S)
    windows: dict[int, _Window] = {}
    for sample in new_samples:
        first = floor_to(sample.ts - max_gap, MINUTE)
        last = floor_to(sample.ts + max_gap, MINUTE)
        window = windows.get(sample.gpu_id)
        if window is None:
            window = windows[sample.gpu_id] = _Window(lo=first, hi=last)
        window.lo, window.hi = min(window.lo, first), max(window.hi, last)
        minute = first
        while minute <= last:
            window.minutes.add(minute)
            minute += MINUTE

    lo = min(w.lo for w in windows.values()) - max_gap
    hi = max(w.hi for w in windows.values()) + MINUTE + max_gap
    raw = defaultdict(list)
    for gpu_id, *row in (
        Sample.objects.filter(gpu_id__in=windows, ts__gte=lo, ts__lt=hi)
        .order_by("gpu_id", "ts")
        .values_list(
            "gpu_id", "ts", "utilization_gpu_pct", "memory_used_mib", "temperature_c", "power_w"
        )
    ):
        raw[gpu_id].append(tuple(row))

    new_minutes = {}
    for gpu_id, window in windows.items():
        for minute, agg in minutes_from_samples(raw[gpu_id], window.minutes, max_gap).items():
            if agg.samples or agg.online_s:
                new_minutes[(gpu_id, minute)] = agg
    if not new_minutes:
        return

    keys_gpus = {gpu for gpu, _ in new_minutes}
    old = {
        (values[0], values[1]): dict(zip(_ADDITIVE, values[2:], strict=True))
        for values in GpuMinute.objects.filter(
            gpu_id__in=keys_gpus,
            start__gte=min(m for _, m in new_minutes),
            start__lte=max(m for _, m in new_minutes),
        ).values_list("gpu_id", "start", *_ADDITIVE)
    }
    deltas: dict[tuple[int, datetime], Agg] = {}
    for (gpu_id, minute), agg in new_minutes.items():
        before = old.get((gpu_id, minute))
        hour_key = (gpu_id, floor_to(minute, HOUR))
        delta = deltas.setdefault(hour_key, Agg())
        for name in _ADDITIVE:
            change = getattr(agg, name) - (before[name] if before else 0)
            setattr(delta, name, getattr(delta, name) + change)
        for name in _MAXIMA:
            value = getattr(agg, name)
            if value is not None:
                current = getattr(delta, name)
                setattr(delta, name, value if current is None else max(current, value))

    GpuMinute.objects.bulk_create(
        [GpuMinute(gpu_id=g, start=m, **agg.values()) for (g, m), agg in new_minutes.items()],
        update_conflicts=True,
        unique_fields=["gpu", "start"],
        update_fields=[*_ADDITIVE, *_MAXIMA],
    )
    _add_to_hours(deltas)


def _add_to_hours(deltas: dict[tuple[int, datetime], Agg]) -> None:
    """Upsert hour rows, adding each delta (one statement for the whole batch)."""
    q = connection.ops.quote_name
    table = q(GpuHour._meta.db_table)
    greatest = "GREATEST" if connection.vendor == "postgresql" else "MAX"
    columns = [q(c) for c in ("gpu_id", "start", *_ADDITIVE, *_MAXIMA)]
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    updates = [f"{q(c)} = {table}.{q(c)} + EXCLUDED.{q(c)}" for c in _ADDITIVE] + [
        f"{q(c)} = {greatest}(COALESCE({table}.{q(c)}, EXCLUDED.{q(c)}), "
        f"COALESCE(EXCLUDED.{q(c)}, {table}.{q(c)}))"
        for c in _MAXIMA
    ]
    params = []
    for (gpu_id, hour), agg in sorted(deltas.items()):
        values = agg.values()
        params.extend(
            [
                gpu_id,
                connection.ops.adapt_datetimefield_value(hour),
                *(values[c] for c in _ADDITIVE),
                *(values[c] for c in _MAXIMA),
            ]
        )
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES "  # noqa: S608 - names are ours
        + ", ".join([placeholders] * len(deltas))
        + f" ON CONFLICT ({q('gpu_id')}, {q('start')}) DO UPDATE SET {', '.join(updates)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
