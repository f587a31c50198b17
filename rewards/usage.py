"""Usage of each physical GPU in an epoch: covered, busy and idle time, exactly.

This is DESIGN.md "Coverage", "Busy", and the sums behind "Compute units" and "Idle units":

- a sample covers `[ts, min(next_ts, ts + max_gap))`, clipped to the epoch;
- the part of that inside an attested job for the same physical GPU, while the sample names
  that job, is busy (a running job counts up to the settlement);
- every other covered part is idle time, worth `min(committed_mib, total - used)` MiB, where
  a valid successful scheduler probe caps `committed_mib` at the memory it really allocated.

Times are integers of microseconds and utilization is the decimal the agent sent (a float's
shortest repr, e.g. 87.5 or 33.3), so every sum here is exact.

MIG instances count for their physical GPU: their busy time (and its utilization) adds to the
parent's compute. Their idle time does not add idle units: the parent's own samples already
report the whole device's memory, instances included, and counting both would pay the same
MiB twice.

`python_usage` is the reference implementation; `sql_usage` computes the same figures in one
window-function pass on PostgreSQL (`tests/test_rewards_properties.py` checks they agree exactly).
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction

from django.conf import settings
from django.db import connection, transaction

from contributors.models import GPU, Probe, Sample
from rewards.models import Job

ONE_US = timedelta(microseconds=1)


def micros(span: timedelta) -> int:
    return span // ONE_US


def utilization(value: float) -> Fraction:
    """The utilization as the agent wrote it: 87.5 → 175/2, 33.3 → 333/10 (never 33.29999…)."""
    return Fraction(repr(float(value)))


@dataclass(frozen=True)
class Reading:
    """One sample, as settlement needs it."""

    device: int
    ts: datetime
    util: float | None
    used_mib: int
    total_mib: int
    job_id: str = ""


@dataclass(frozen=True)
class Device:
    """A GPU or MIG instance: which physical GPU it counts for, and its committed memory."""

    pk: int
    physical: int
    committed_mib: int

    @property
    def is_instance(self) -> bool:
        return self.physical != self.pk


@dataclass(frozen=True)
class JobSpan:
    """An attested job: its physical GPU and its time, a running job ending at the settlement."""

    job_id: str
    physical: int
    start: datetime
    end: datetime


@dataclass
class Usage:
    """Per physical GPU: the exact sums its compute and idle units are made of."""

    covered_us: int = 0
    busy_us: int = 0
    busy_util_us: Fraction = field(default_factory=Fraction)  # Σ busy µs * utilization %
    null_util_us: int = 0  # busy µs whose sample had no utilization (counted as 0)
    idle_us: int = 0
    idle_mib_us: int = 0  # Σ idle µs * MiB of committed memory that stayed available

    def as_tuple(self) -> tuple:
        return (
            self.covered_us,
            self.busy_us,
            self.busy_util_us,
            self.null_util_us,
            self.idle_us,
            self.idle_mib_us,
        )


def python_usage(
    readings,
    devices: dict[int, Device],
    jobs: dict[str, JobSpan],
    start: datetime,
    end: datetime,
    max_gap: timedelta,
) -> dict[int, Usage]:
    """The reference: usage per physical GPU from plain readings (in any order)."""
    by_device: dict[int, list[Reading]] = defaultdict(list)
    for reading in readings:
        by_device[reading.device].append(reading)

    usage: dict[int, Usage] = {}
    for device_pk, series in by_device.items():
        device = devices[device_pk]
        series.sort(key=lambda r: r.ts)
        into = usage.setdefault(device.physical, Usage())
        util_us: dict[float, int] = defaultdict(int)
        for index, reading in enumerate(series):
            covered_until = reading.ts + max_gap
            if index + 1 < len(series):
                covered_until = min(covered_until, series[index + 1].ts)
            a, b = max(reading.ts, start), min(covered_until, end)
            if b <= a:
                continue
            covered = micros(b - a)
            busy = 0
            job = jobs.get(reading.job_id) if reading.job_id else None
            if job is not None and job.physical == device.physical:
                job_a, job_b = max(a, job.start), min(b, job.end)
                if job_b > job_a:
                    busy = micros(job_b - job_a)
            into.covered_us += covered
            if busy:
                into.busy_us += busy
                if reading.util is None:
                    into.null_util_us += busy
                else:
                    util_us[reading.util] += busy
            idle = covered - busy
            if idle and not device.is_instance:
                available = min(device.committed_mib, reading.total_mib - reading.used_mib)
                into.idle_us += idle
                into.idle_mib_us += idle * available
        into.busy_util_us += sum(
            (utilization(u) * us for u, us in util_us.items()), start=Fraction(0)
        )
    return usage


# --- loading from the database ------------------------------------------------------------


def load_devices(pks, caps: dict[int, int] | None = None) -> dict[int, Device]:
    """The devices, their committed memory capped by a valid scheduler probe (`probe_caps`)."""
    caps = caps or {}
    rows = GPU.objects.filter(pk__any=list(pks)).values_list(
        "pk", "mig_parent_id", "committed_memory_mib", "memory_total_mib"
    )
    devices = {}
    for pk, parent, committed, total in rows:
        committed = total if committed is None else min(committed, total)
        if pk in caps:
            committed = min(committed, caps[pk])
        devices[pk] = Device(pk=pk, physical=parent or pk, committed_mib=committed)
    return devices


def probe_caps(end: datetime) -> dict[int, int]:
    """Physical GPU pk → MiB its idle memory may count at most: the last scheduler probe
    before `end`, when it succeeded and is still valid (`GPU_PROBE_VALID_S`)."""
    valid = timedelta(seconds=settings.GPU_PROBE_VALID_S)
    latest = {}
    rows = Probe.objects.filter(at__lt=end, at__gte=end - valid).order_by("gpu_id", "-at", "-pk")
    for gpu_id, at, mib, ok in rows.values_list("gpu_id", "at", "allocated_mib", "ok"):
        latest.setdefault(gpu_id, (at, mib, ok))
    return {gpu: mib for gpu, (_at, mib, ok) in latest.items() if ok}


def load_jobs(start: datetime, end: datetime, now: datetime) -> dict[str, JobSpan]:
    """Attested jobs overlapping the epoch, keyed by job_id, on their physical GPU."""
    rows = (
        Job.objects.filter(started_at__lt=end)
        .exclude(ended_at__lte=start)
        .values_list("job_id", "gpu_id", "gpu__mig_parent_id", "started_at", "ended_at")
    )
    return {
        job_id: JobSpan(job_id, parent or gpu_id, started, ended or now)
        for job_id, gpu_id, parent, started, ended in rows
    }


def readings_in(start: datetime, end: datetime, max_gap: timedelta, gpu_ids=None):
    """Every sample whose coverage can reach into [start, end) (of those GPUs, if given)."""
    rows = Sample.objects.filter(ts__gt=start - max_gap, ts__lt=end)
    if gpu_ids is not None:
        rows = rows.filter(gpu_id__in=list(gpu_ids))
    rows = rows.values_list(
        "gpu_id", "ts", "utilization_gpu_pct", "memory_used_mib", "memory_total_mib", "job_id"
    ).order_by()
    for row in rows.iterator(chunk_size=20_000):
        yield Reading(*row)


def database_usage(
    start: datetime, end: datetime, max_gap: timedelta, now: datetime, gpu_ids=None
) -> dict[int, Usage]:
    """The reference implementation over the stored samples (of those GPUs, if given)."""
    readings = list(readings_in(start, end, max_gap, gpu_ids))
    devices = load_devices({r.device for r in readings}, probe_caps(end))
    return python_usage(readings, devices, load_jobs(start, end, now), start, end, max_gap)


# The same definitions in one pass: LEAD gives each sample its next_ts, a join finds the job it
# names on the same physical GPU, and the sums are exact. Times become bigint microseconds from
# the epoch's start once per row (date_part of an interval is a float8 of seconds, exact to far
# below a microsecond at these sizes, then rounded), so the rest is integer arithmetic.
# Utilization: a whole number (what nvidia-smi reports) is multiplied as bigint; any other goes
# float8 -> text -> numeric, the text being the shortest repr, as Python's repr() in
# `utilization`.
_USAGE_SQL = """
WITH cap AS (
    SELECT * FROM unnest(%(cap_ids)s::bigint[], %(cap_mib)s::bigint[]) AS c(gpu_id, mib)
), dev AS (
    SELECT g.id, COALESCE(g.mig_parent_id, g.id) AS phys, g.mig_parent_id IS NOT NULL AS instance,
           LEAST(COALESCE(g.committed_memory_mib, g.memory_total_mib), g.memory_total_mib,
                 cap.mib) AS committed
    FROM contributors_gpu g LEFT JOIN cap ON cap.gpu_id = g.id
), job AS (
    SELECT j.job_id, COALESCE(g.mig_parent_id, g.id) AS phys,
           round(date_part('epoch', j.started_at - %(start)s) * 1000000)::bigint AS ja,
           round(date_part('epoch', COALESCE(j.ended_at, %(now)s) - %(start)s) * 1000000)::bigint
               AS jb
    FROM rewards_job j JOIN contributors_gpu g ON g.id = j.gpu_id
    WHERE j.started_at < %(end)s AND (j.ended_at IS NULL OR j.ended_at > %(start)s)
), s AS (
    SELECT gpu_id, util, used, total, job_id, t,
           LEAD(t) OVER (PARTITION BY gpu_id ORDER BY t) AS next_t
    FROM (
        SELECT gpu_id, utilization_gpu_pct AS util, memory_used_mib AS used,
               memory_total_mib AS total, job_id,
               round(date_part('epoch', ts - %(start)s) * 1000000)::bigint AS t
        FROM contributors_sample
        WHERE ts > %(low)s AND ts < %(end)s {only}
    ) raw
), iv AS (
    SELECT d.phys, d.instance, LEAST(d.committed, s.total - s.used) AS available,
           s.util, s.job_id,
           GREATEST(s.t, 0) AS a,
           LEAST(s.t + %(gap_us)s, COALESCE(s.next_t, %(end_us)s), %(end_us)s) AS b
    FROM s JOIN dev d ON d.id = s.gpu_id
), part AS (
    -- A sample that covers nothing of the epoch still names its GPU, as in the reference.
    SELECT iv.phys, iv.instance, iv.util, iv.available, GREATEST(iv.b - iv.a, 0) AS covered_us,
           CASE WHEN job.job_id IS NULL THEN 0  -- (LEAST and GREATEST skip NULLs)
                ELSE LEAST(iv.b, job.jb) - GREATEST(iv.a, job.ja) END AS busy_us
    FROM iv LEFT JOIN job ON job.job_id = iv.job_id AND job.phys = iv.phys
                         AND job.ja < iv.b AND job.jb > iv.a AND iv.b > iv.a
)
SELECT phys,
       SUM(covered_us),
       SUM(busy_us),
       COALESCE(SUM(busy_us * util::bigint) FILTER (WHERE util = trunc(util)), 0)
         + COALESCE(SUM(busy_us * util::text::numeric) FILTER (WHERE util <> trunc(util)), 0),
       COALESCE(SUM(busy_us) FILTER (WHERE util IS NULL), 0),
       COALESCE(SUM(covered_us - busy_us) FILTER (WHERE NOT instance), 0),
       COALESCE(SUM((covered_us - busy_us) * available) FILTER (WHERE NOT instance), 0)
FROM part
GROUP BY phys
"""


def sql_usage(
    start: datetime, end: datetime, max_gap: timedelta, now: datetime, gpu_ids=None
) -> dict[int, Usage]:
    """The same figures as `database_usage`, computed by PostgreSQL in one pass (for those
    GPUs, if given)."""
    if connection.vendor != "postgresql":
        raise NotImplementedError("the one-pass usage query is written for PostgreSQL")
    caps = probe_caps(end)
    params = {
        "cap_ids": list(caps),
        "cap_mib": list(caps.values()),
        "start": start,
        "end": end,
        "low": start - max_gap,
        "now": now,
        "gap_us": micros(max_gap),
        "end_us": micros(end - start),
        "ids": list(gpu_ids or []),
    }
    only = "" if gpu_ids is None else "AND gpu_id = ANY(%(ids)s)"
    with transaction.atomic(), connection.cursor() as cursor:
        # Shortest-repr float output, whatever the server's configuration says.
        cursor.execute("SET LOCAL extra_float_digits = 1")
        cursor.execute(_USAGE_SQL.replace("{only}", only), params)
        rows = cursor.fetchall()
    return {
        phys: Usage(
            covered_us=int(covered),
            busy_us=int(busy),
            busy_util_us=Fraction(util_us),
            null_util_us=int(null_us),
            idle_us=int(idle),
            idle_mib_us=int(idle_mib),
        )
        for phys, covered, busy, util_us, null_us, idle, idle_mib in rows
    }


def usage_for(start, end, max_gap, now, method: str = "auto") -> tuple[dict[int, Usage], str]:
    """Usage by the fastest method this database has (`auto`), or by `python` / `sql`."""
    if method == "auto":
        method = "sql" if connection.vendor == "postgresql" else "python"
    if method == "sql":
        return sql_usage(start, end, max_gap, now), method
    return database_usage(start, end, max_gap, now), method
