"""Time series of one GPU for charts: raw samples for the last hour, rollups beyond."""

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from contributors.models import GPU, GpuHour, GpuMinute, Sample
from portal.lib.times import rfc3339


@dataclass(frozen=True)
class Range:
    span: timedelta
    source: str  # "raw", "minute" or "hour"
    resolution_s: int


RANGES = {
    "1h": Range(timedelta(hours=1), "raw", 0),
    "24h": Range(timedelta(hours=24), "minute", 60),
    "7d": Range(timedelta(days=7), "hour", 3600),
    "30d": Range(timedelta(days=30), "hour", 3600),
}


def _avg(total: float, count: int, digits: int = 2):
    return None if not count else round(total / count, digits)


# Raw samples one chart draws at most: an hour at 5-second sampling. An agent that samples
# faster (nothing stops a third-party one) gets the hour drawn from minute rollups instead.
MAX_RAW_POINTS = 720


def series(gpu: GPU, range_name: str, now=None) -> dict:
    """The points of one range: raw samples for the hour (rollups past MAX_RAW_POINTS)."""
    spec = RANGES[range_name]
    now = now or timezone.now()
    since = now - spec.span
    points = _raw_points(gpu, since, now) if spec.source == "raw" else None
    if points is not None:
        resolution = settings.AGENT_SAMPLE_INTERVAL_S
    else:
        if spec.source == "raw":
            spec = Range(spec.span, "minute", 60)
        points = _rollup_points(GpuMinute if spec.source == "minute" else GpuHour, gpu, since, now)
        resolution = spec.resolution_s
    return {
        "uuid": gpu.uuid,
        "range": range_name,
        "resolution_s": resolution,
        "source": spec.source,
        "memory_total_mib": gpu.memory_total_mib,
        "points": points,
    }


def _raw_points(gpu: GPU, since, now) -> list[dict] | None:
    """The samples as they came, or None when there are more than a chart draws."""
    rows = list(
        Sample.objects.filter(gpu=gpu, ts__gte=since, ts__lte=now)
        .order_by("ts")
        .values_list(
            "ts", "utilization_gpu_pct", "memory_used_mib", "temperature_c", "power_w", "job_id"
        )[: MAX_RAW_POINTS + 1]
    )
    if len(rows) > MAX_RAW_POINTS:
        return None
    return [
        {
            "t": rfc3339(ts),
            "utilization_gpu_pct": util,
            "memory_used_mib": mem,
            "temperature_c": temp,
            "power_w": power,
            "job_id": job or None,
        }
        for ts, util, mem, temp, power, job in rows
    ]


def _rollup_points(model, gpu: GPU, since, now) -> list[dict]:
    rows = (
        model.objects.filter(gpu=gpu, start__gte=since, start__lte=now)
        .order_by("start")
        .values_list(
            "start", "sum_util", "n_util", "sum_mem", "samples", "sum_temp", "n_temp",
            "sum_power", "n_power", "max_util", "max_mem", "online_s",
        )
    )  # fmt: skip
    return [
        {
            "t": rfc3339(start),
            "utilization_gpu_pct": _avg(sum_util, n_util),
            "memory_used_mib": _avg(sum_mem, samples, 0),
            "temperature_c": _avg(sum_temp, n_temp, 1),
            "power_w": _avg(sum_power, n_power),
            "max_utilization_gpu_pct": max_util,
            "max_memory_used_mib": max_mem,
            "samples": samples,
            "online_s": round(online_s, 3),
        }
        for (start, sum_util, n_util, sum_mem, samples, sum_temp, n_temp, sum_power, n_power,
             max_util, max_mem, online_s) in rows
    ]  # fmt: skip
