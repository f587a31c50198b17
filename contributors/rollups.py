"""Per-minute and per-hour rollups of GPU telemetry.

Charts of a day read minutes and charts of a month read hours, so no request ever scans raw
samples beyond the last hour. Two writers keep them, both holding the GPUs' rows locked, so
never at once for the same GPU:

- the ingestion worker, for samples newer than everything stored for their GPU (agents report
  in order, so nearly all of them): it adds what they change, computed from the samples in
  hand (`deltas_in_order`, `add_deltas`). A sample covers [ts, min(next, ts + max_gap)); the
  newest is counted to ts + max_gap, and the next batch takes back what its first sample cuts.
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
from django.db import connection, transaction

from contributors.models import GPU, GpuHour, GpuMinute, RollupDue, Sample
from portal import db

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


def run(max_spans: int | None = None) -> int:
    """Redo the rollups of every noted span; returns how many spans were taken."""
    max_spans = max_spans or settings.ROLLUP_MAX_SPANS
    taken = 0
    while True:
        with transaction.atomic():
            if not _only_run():
                return taken
            due = _take_due(max_spans)
            if not due:
                return taken
            ranges = minute_ranges(due)
            _lock_gpus(sorted({gpu for gpu, _, _ in ranges}))
            if connection.vendor == "postgresql":
                _redo_in_sql(ranges)
            else:
                _redo_in_python(ranges)
        taken += len(due)
        if len(due) < max_spans:
            return taken


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
        for name in _ADDITIVE:
            setattr(total, name, getattr(total, name) + getattr(agg, name))
        for name in _MAXIMA:
            value, current = getattr(agg, name), getattr(total, name)
            if value is not None and (current is None or value > current):
                setattr(total, name, value)
    _upsert_adding(GpuMinute, deltas)
    _upsert_adding(GpuHour, hours)


def _upsert_adding(model, rows: dict[tuple[int, datetime], Agg]) -> None:
    q = connection.ops.quote_name
    table = q(model._meta.db_table)
    postgres = connection.vendor == "postgresql"
    greatest = "GREATEST" if postgres else "MAX"
    names = ("gpu_id", "start", *_COLUMNS)
    updates = ", ".join(
        f"{q(c)} = {table}.{q(c)} + EXCLUDED.{q(c)}" if c in _ADDITIVE
        else f"{q(c)} = {greatest}(COALESCE({table}.{q(c)}, EXCLUDED.{q(c)}), "
        f"COALESCE(EXCLUDED.{q(c)}, {table}.{q(c)}))"
        for c in _COLUMNS
    )  # fmt: skip
    keys = sorted(rows)
    columns = [
        [gpu for gpu, _ in keys],
        [start for _, start in keys],
        *([getattr(rows[key], c) for key in keys] for c in _COLUMNS),
    ]
    tail = f" ON CONFLICT (gpu_id, start) DO UPDATE SET {updates}"
    if postgres:
        kinds = ["int8", "timestamptz", *(_KINDS[c] for c in _COLUMNS)]
        source = db.json_rows([(q(n), kind) for n, kind in zip(names, kinds, strict=True)])
        db.fetch(
            f"INSERT INTO {table} ({', '.join(q(n) for n in names)}) "  # noqa: S608
            f"SELECT * FROM {source}{tail}",
            [db.rows_json(zip(*columns, strict=True))],
        )
        return
    placeholders = ", ".join(["%s"] * len(names))
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} ({', '.join(q(n) for n in names)}) "  # noqa: S608
            f"VALUES ({placeholders}){tail}",
            [[row[0], adapt(row[1]), *row[2:]] for row in zip(*columns, strict=True)],
        )


def _take_due(limit: int) -> list[tuple[int, datetime, datetime]]:
    """Delete and return the oldest noted spans (gpu, first, last); the caller's transaction
    rolls the delete back if the rollups fail."""
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(RollupDue._meta.db_table)
        return db.fetch(
            f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} ORDER BY id LIMIT %s) "  # noqa: S608
            "RETURNING gpu_id, first_ts, last_ts",
            [limit],
        )
    rows = list(
        RollupDue.objects.order_by("pk").values_list("pk", "gpu_id", "first_ts", "last_ts")[:limit]
    )
    RollupDue.objects.filter(pk__in=[row[0] for row in rows]).delete()
    return [row[1:] for row in rows]


def _lock_gpus(ids: list[int]) -> None:
    """Hold the GPUs' rows, in id order as the ingestion worker takes them: while a run redoes
    a GPU's minutes from its raw samples, no worker adds to them (see `add_deltas`)."""
    if connection.vendor == "postgresql" and ids:
        table = connection.ops.quote_name(GPU._meta.db_table)
        db.fetch(f"SELECT id FROM {table} WHERE id = ANY(%s) ORDER BY id FOR UPDATE", [ids])  # noqa: S608


_LOCK_KEY = 0x0F1A_0001  # pg_advisory_xact_lock key of the rollup run


def _only_run() -> bool:
    if connection.vendor != "postgresql":
        return True  # SQLite: this transaction is the only writer (IMMEDIATE)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_LOCK_KEY])
        return cursor.fetchone()[0]


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


_COLUMNS = ("samples", "online_s", "n_util", "sum_util", "max_util", "sum_mem", "max_mem",
            "n_temp", "sum_temp", "max_temp", "n_power", "sum_power", "max_power")  # fmt: skip
_KINDS = {c: "int8" if c in ("samples", "n_util", "n_temp", "n_power", "max_mem") else "float8"
          for c in _COLUMNS}  # fmt: skip


def _redo_in_sql(ranges) -> None:
    """One statement: recompute the minutes from raw samples and move each hour by how much
    its minutes changed (an hour is not read back from its sixty minutes on every run)."""
    q = connection.ops.quote_name
    minute_table, hour_table = q(GpuMinute._meta.db_table), q(GpuHour._meta.db_table)
    gap = f"interval '{int(settings.COVERAGE_MAX_GAP_S)} seconds'"
    names = ", ".join(q(c) for c in ("gpu_id", "start", *_COLUMNS))
    gpus, los, his = (list(column) for column in zip(*ranges, strict=True))
    replace = ", ".join(f"{q(c)} = EXCLUDED.{q(c)}" for c in _COLUMNS)
    add = ", ".join(
        f"{q(c)} = {hour_table}.{q(c)} + EXCLUDED.{q(c)}" if c in _ADDITIVE
        else f"{q(c)} = GREATEST({hour_table}.{q(c)}, EXCLUDED.{q(c)})"
        for c in _COLUMNS
    )  # fmt: skip
    deltas = ", ".join(
        f"sum(f.{q(c)} - coalesce(o.{q(c)}, 0))" if c in _ADDITIVE else f"max(f.{q(c)})"
        for c in _COLUMNS
    )
    # Each sample covers [ts, e): up to the next sample, at most `gap`; the covered time is
    # spread over the minutes it touches, and the sample's values count in its own minute.
    # Every sub-statement sees the tables as they were before it, so `old` holds the minutes
    # as the previous run left them.
    sql = f"""
        WITH d(gpu_id, lo, hi) AS (
            SELECT * FROM unnest(%s::int8[], %s::timestamptz[], %s::timestamptz[])
        ), s AS (
            SELECT d.gpu_id, d.lo, d.hi, x.ts, x.utilization_gpu_pct AS u,
                   x.memory_used_mib AS m, x.temperature_c AS t, x.power_w AS p,
                   LEAST(x.ts + {gap}, COALESCE(
                       LEAD(x.ts) OVER (PARTITION BY d.gpu_id, d.lo ORDER BY x.ts), x.ts + {gap}
                   )) AS e
            FROM d JOIN {q(Sample._meta.db_table)} x ON x.gpu_id = d.gpu_id
             AND x.ts >= d.lo - {gap} AND x.ts < d.hi + interval '1 minute' + {gap}
        ), b AS (
            SELECT s.gpu_id, g.start, s.u, s.m, s.t, s.p,
                   g.start = date_trunc('minute', s.ts) AS own,
                   EXTRACT(EPOCH FROM LEAST(s.e, g.start + interval '1 minute')
                                      - GREATEST(s.ts, g.start))::float8 AS covered
            FROM s CROSS JOIN LATERAL generate_series(
                date_trunc('minute', s.ts), s.e - interval '1 microsecond', interval '1 minute'
            ) AS g(start)
            WHERE g.start >= s.lo AND g.start <= s.hi
        ), f AS (
            SELECT gpu_id, start,
                   count(*) FILTER (WHERE own) AS samples, sum(covered) AS online_s,
                   count(u) FILTER (WHERE own) AS n_util,
                   COALESCE(sum(u) FILTER (WHERE own), 0) AS sum_util,
                   max(u) FILTER (WHERE own) AS max_util,
                   COALESCE(sum(m) FILTER (WHERE own), 0) AS sum_mem,
                   max(m) FILTER (WHERE own) AS max_mem,
                   count(t) FILTER (WHERE own) AS n_temp,
                   COALESCE(sum(t) FILTER (WHERE own), 0) AS sum_temp,
                   max(t) FILTER (WHERE own) AS max_temp,
                   count(p) FILTER (WHERE own) AS n_power,
                   COALESCE(sum(p) FILTER (WHERE own), 0) AS sum_power,
                   max(p) FILTER (WHERE own) AS max_power
            FROM b GROUP BY gpu_id, start
        ), o AS (
            SELECT m.* FROM {minute_table} m JOIN f ON m.gpu_id = f.gpu_id AND m.start = f.start
        ), minutes AS (
            INSERT INTO {minute_table} ({names})
            SELECT gpu_id, start, {", ".join(_COLUMNS)} FROM f
            ON CONFLICT (gpu_id, start) DO UPDATE SET {replace}
        )
        INSERT INTO {hour_table} ({names})
        SELECT f.gpu_id, date_trunc('hour', f.start), {deltas}
        FROM f LEFT JOIN o ON o.gpu_id = f.gpu_id AND o.start = f.start
        GROUP BY f.gpu_id, date_trunc('hour', f.start)
        ON CONFLICT (gpu_id, start) DO UPDATE SET {add}
    """  # noqa: S608 - only our own names and an integer
    with connection.cursor() as cursor:
        cursor.execute(sql, [gpus, los, his])


def _redo_in_python(ranges) -> None:
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
    _upsert(GpuMinute, rows)

    hours = []
    for gpu, hour in _hours_of(ranges):
        total = Agg()
        for values in GpuMinute.objects.filter(
            gpu_id=gpu, start__gte=hour, start__lt=hour + HOUR
        ).values(*_COLUMNS):
            for name in _ADDITIVE:
                setattr(total, name, getattr(total, name) + values[name])
            for name in _MAXIMA:
                if values[name] is not None:
                    current = getattr(total, name)
                    setattr(
                        total,
                        name,
                        values[name] if current is None else max(current, values[name]),
                    )
        if total.samples or total.online_s:
            hours.append(GpuHour(gpu_id=gpu, start=hour, **total.values()))
    _upsert(GpuHour, hours)


def _upsert(model, rows) -> None:
    model.objects.bulk_create(
        rows,
        batch_size=500,
        update_conflicts=True,
        unique_fields=["gpu", "start"],
        update_fields=[*_ADDITIVE, *_MAXIMA],
    )
