"""Reading the ledger at any size: day totals kept by settlement (`EarningDay`) instead of
summing every entry, and the contributor's earned total from them.

The ledger itself (`RewardEntry`) stays the record; the day totals are written in the same
transaction as the entries they sum, so they never disagree with it (tests check it).
"""

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

from contributors.models import Contributor
from portal.lib import db
from rewards.models import EarningDay, RewardEntry


def utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def add_to_earning_days(epoch_start: datetime, entries: list) -> None:
    """Add an epoch's entries to their contributors' day totals (`EarningDay`), in the
    settlement's transaction. Contributors are locked in id order, so two settlements adding to
    the same day wait for each other instead of losing an addition (on SQLite the epoch row
    already holds the database's write lock)."""
    added: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for entry in entries:
        added[entry.contributor_id][entry.kind == RewardEntry.Kind.IDLE] += entry.amount_wei
    if not added:
        return
    day = utc_day(epoch_start)
    ids = sorted(added)
    list(Contributor.objects.select_for_update().filter(pk__any=ids).order_by("pk").values("pk"))
    days = {
        d.contributor_id: d for d in EarningDay.objects.filter(contributor_id__any=ids, day=day)
    }
    new = []
    for contributor_id, (compute, idle) in added.items():
        row = days.get(contributor_id)
        if row is None:
            new.append(EarningDay(contributor_id=contributor_id, day=day, compute_wei=compute,
                                  idle_wei=idle))  # fmt: skip
        else:
            row.compute_wei += compute
            row.idle_wei += idle
    db.insert_many(EarningDay, new)
    EarningDay.objects.bulk_update(
        list(days.values()), ["compute_wei", "idle_wei"], batch_size=2000
    )


def earned_wei(contributor) -> int:
    """Everything the contributor earned: Σ of their day totals (a row per day)."""
    return sum(
        d.total_wei
        for d in EarningDay.objects.filter(contributor=contributor).only("compute_wei", "idle_wei")
    )


def daily_earnings(contributor, first_day: date, days: int) -> list[tuple[str, int, int]]:
    """(ISO date, compute wei, idle wei) for each of `days` days from `first_day`, zeros
    included."""
    last_day = first_day + timedelta(days=days - 1)
    found = {
        d.day: (d.compute_wei, d.idle_wei)
        for d in EarningDay.objects.filter(
            contributor=contributor, day__gte=first_day, day__lte=last_day
        )
    }
    series = []
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        compute, idle = found.get(day, (0, 0))
        series.append((day.isoformat(), compute, idle))
    return series
