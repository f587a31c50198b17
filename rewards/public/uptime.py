"""Uptime for the leaderboard: the seconds each contributor's physical GPUs were online (their
telemetry coverage, DESIGN.md "Coverage"), summed from the hourly rollups (`GpuHour`).

A month of hourly rollups is a row per GPU and hour, far too many to sum every minute. A day's
sums stop changing once no sample of it can still arrive (agents may send samples up to
TELEMETRY_MAX_AGE_S old; the rollups catch up within minutes), so each such day is summed once,
per contributor, and kept in the cache; every run sums only the days after it (usually
yesterday and today) and the last 24 hours. Three queries at most, whatever the history.
"""

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import Sum
from django.db.models.functions import TruncDate

from contributors.models import GpuHour

DAY = timedelta(days=1)
# How long after its last sample could arrive a day is taken as final (rollups catch up).
ROLLUP_LAG = timedelta(hours=1)
# Longest period a board covers, in whole UTC days.
MAX_DAYS = 30
DAY_KEY = "public:uptime-day:v1:{day}"
DAY_KEPT_S = (MAX_DAYS + 2) * 86400


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _physical_hours():
    # MIG instances count through their physical GPU, which reports the GPU's own coverage.
    return GpuHour.objects.filter(gpu__mig_parent__isnull=True)


def since(start: datetime) -> dict[int, float]:
    """contributor id → seconds online in the hours that began at or after `start`."""
    rows = (
        _physical_hours()
        .filter(start__gte=start)
        .values("gpu__node__owner_id")
        .annotate(online=Sum("online_s"))
        .order_by()
    )
    return {row["gpu__node__owner_id"]: row["online"] or 0.0 for row in rows}


def by_day(first: date, end: date) -> dict[date, dict[int, float]]:
    """UTC day in [first, end) → contributor id → seconds online that day: one query."""
    rows = (
        _physical_hours()
        .filter(start__gte=_midnight(first), start__lt=_midnight(end))
        .annotate(day=TruncDate("start", tzinfo=UTC))
        .values("day", "gpu__node__owner_id")
        .annotate(online=Sum("online_s"))
        .order_by()
    )
    days: dict[date, dict[int, float]] = defaultdict(dict)
    for row in rows:
        days[row["day"]][row["gpu__node__owner_id"]] = row["online"] or 0.0
    return days


def final_before(now: datetime) -> date:
    """The first UTC day that may still change; every day before it is final."""
    settled = now - timedelta(seconds=settings.TELEMETRY_MAX_AGE_S) - ROLLUP_LAG
    return settled.astimezone(UTC).date()


def days(now: datetime, first: date) -> dict[date, dict[int, float]]:
    """Every UTC day from `first` to today (so far): final days from the cache (summed once,
    in one query for all those missing), the others summed now (one query)."""
    today = now.astimezone(UTC).date()
    final = min(final_before(now), today + DAY)
    wanted = [first + i * DAY for i in range(max(0, (final - first).days))]
    keys = {day: DAY_KEY.format(day=day.isoformat()) for day in wanted}
    cached = cache.get_many(list(keys.values()))
    out = {day: cached[keys[day]] for day in wanted if keys[day] in cached}
    missing = [day for day in wanted if day not in out]
    if missing:
        fetched = by_day(min(missing), max(missing) + DAY)
        found = {day: fetched.get(day, {}) for day in missing}
        cache.set_many({keys[day]: sums for day, sums in found.items()}, timeout=DAY_KEPT_S)
        out.update(found)
    if final <= today:
        out.update(by_day(max(first, final), today + DAY))
    return out


def total(per_day: dict[date, dict[int, float]], first: date) -> dict[int, int]:
    """contributor id → whole seconds online over the days from `first` on."""
    sums: dict[int, float] = defaultdict(float)
    for day, seconds in per_day.items():
        if day >= first:
            for cid, online in seconds.items():
                sums[cid] += online
    return {cid: round(online) for cid, online in sums.items()}
