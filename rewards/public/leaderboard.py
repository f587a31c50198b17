"""The public leaderboard: contributors ranked by what they earned (in all, by compute, by
idle) and by uptime over the last 24 hours, 7 days or 30 days, computed set-based for the beat
task to store.

- **Window**: 24 h is the last 24 hours; 7 d and 30 d are whole UTC days, today (so far) and
  the 6 or 29 before it. `since` is where the window starts.
- **Earnings**: of the epochs that started at or after `since`. 24 h sums the ledger
  (`RewardEntry`); 7 d and 30 d sum the day totals settlement keeps (`EarningDay`, a row per
  contributor and UTC day of the epoch's start), which equal the ledger to the wei.
- **Uptime**: GPU-hours online: the time each of the contributor's physical GPUs was covered by
  telemetry (DESIGN.md "Coverage", at most 30 s a sample), summed from the hourly rollups
  (`GpuHour`) of the hours that began at or after `since`, in whole seconds
  (`rewards.public.uptime`, which keeps the sums of days that no longer change).
- **Ranks**: by the board's value, largest first; ties by the contributor's id, oldest account
  first. Only contributors with a value above zero are ranked, at most `BOARD_SIZE` a board.
- **Privacy**: a contributor who chose not to be listed is left out before ranking, so they
  leave no gap; the others appear by display name (if they chose one and to be listed by it)
  or by a shortened payout wallet. `store.named` applies the choices again right before the
  boards are stored, and `store.relabel` whenever a contributor changes them.
"""

import heapq
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import Q, Sum

from contributors.models import Contributor, Wallet
from portal.lib.times import rfc3339
from rewards.models import EarningDay, RewardEntry
from rewards.public import uptime

PERIODS = ("24h", "7d", "30d")
BOARDS = ("total", "compute", "idle", "uptime")
BOARD_SIZE = 100
DEFAULT_PERIOD = "24h"
DEFAULT_BOARD = "total"
HIDDEN = Contributor.Leaderboard.HIDDEN


def since(period: str, now: datetime) -> datetime:
    """Where the period's window starts (module docstring)."""
    if period == "24h":
        return now - timedelta(hours=24)
    days = {"7d": 7, "30d": 30}[period]
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days - 1)


def shorten(address: str) -> str:
    """0x1234567890abcdef… → "0x1234…cdef"."""
    return f"{address[:6]}…{address[-4:]}" if len(address) > 12 else address


# --- Σ wei per contributor ---------------------------------------------------------------------
# On PostgreSQL wei are NUMERIC and summed in SQL, exactly; elsewhere the column is text
# (rewards.wei), so the rows come back and Python sums them. Either way one query.


class _SqlSums:
    def entries(self, rows) -> dict[int, list[int]]:
        totals = rows.values("contributor_id").annotate(
            compute=Sum("amount_wei", filter=Q(kind=RewardEntry.Kind.COMPUTE)),
            idle=Sum("amount_wei", filter=Q(kind=RewardEntry.Kind.IDLE)),
        )
        return {t["contributor_id"]: [int(t["compute"] or 0), int(t["idle"] or 0)] for t in totals}

    def days(self, rows) -> dict[int, list[int]]:
        totals = rows.values("contributor_id").annotate(
            compute=Sum("compute_wei"), idle=Sum("idle_wei")
        )
        return {t["contributor_id"]: [int(t["compute"] or 0), int(t["idle"] or 0)] for t in totals}


class _PythonSums:
    def entries(self, rows) -> dict[int, list[int]]:
        totals: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for contributor_id, kind, amount in rows.values_list(
            "contributor_id", "kind", "amount_wei"
        ):
            totals[contributor_id][kind == RewardEntry.Kind.IDLE] += amount
        return dict(totals)

    def days(self, rows) -> dict[int, list[int]]:
        totals: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for contributor_id, compute, idle in rows.values_list(
            "contributor_id", "compute_wei", "idle_wei"
        ):
            totals[contributor_id][0] += compute
            totals[contributor_id][1] += idle
        return dict(totals)


def _sums():
    return _SqlSums() if connection.vendor == "postgresql" else _PythonSums()


def earnings(period: str, start: datetime) -> dict[int, list[int]]:
    """contributor id → [compute wei, idle wei] of the epochs that started at or after
    `start`: one query."""
    if period == "24h":
        return _sums().entries(RewardEntry.objects.filter(epoch__start__gte=start).order_by())
    return _sums().days(EarningDay.objects.filter(day__gte=start.date()).order_by())


def online(now: datetime) -> dict[str, dict[int, int]]:
    """period → contributor id → whole seconds online in it (`rewards.public.uptime`)."""
    per_day = uptime.days(now, since("30d", now).date())
    return {
        "24h": {cid: round(s) for cid, s in uptime.since(since("24h", now)).items()},
        **{period: uptime.total(per_day, since(period, now).date()) for period in ("7d", "30d")},
    }


def ranked(values: dict[int, int], size: int | None = None) -> list[int]:
    """The ids of the `size` (BOARD_SIZE) largest values above zero: largest first, ties by
    id."""
    size = BOARD_SIZE if size is None else size
    return [
        cid for _, cid in heapq.nsmallest(size, ((-v, cid) for cid, v in values.items() if v > 0))
    ]


def _row(cid: int, earned: dict, online_s: dict) -> dict:
    compute_wei, idle_wei = earned.get(cid, (0, 0))
    return {
        "cid": cid,
        "rank": 0,  # numbered by store.named, once the unlisted are gone
        "name": "",
        "named": False,
        "total_wei": str(compute_wei + idle_wei),
        "compute_wei": str(compute_wei),
        "idle_wei": str(idle_wei),
        "online_s": online_s.get(cid, 0),
    }


def compute(now: datetime) -> dict:
    """Every board of every period as of `now`: rows carry the contributor's id (`cid`, never
    served) for `store.named` to name them. Contributors who chose not to be listed are left
    out before ranking, so a board still holds the BOARD_SIZE largest of the others."""
    hidden = set(Contributor.objects.filter(leaderboard=HIDDEN).values_list("pk", flat=True))
    seconds = online(now)
    periods = {}
    for period in PERIODS:
        start = since(period, now)
        earned = {cid: v for cid, v in earnings(period, start).items() if cid not in hidden}
        online_s = {cid: v for cid, v in seconds[period].items() if cid not in hidden}
        values = {
            "total": {cid: c + i for cid, (c, i) in earned.items()},
            "compute": {cid: c for cid, (c, _) in earned.items()},
            "idle": {cid: i for cid, (_, i) in earned.items()},
            "uptime": online_s,
        }
        boards = {
            board: [_row(cid, earned, online_s) for cid in ranked(values[board])]
            for board in BOARDS
        }
        periods[period] = {"since": rfc3339(start), "boards": boards}
    return {"computed_at": rfc3339(now), "size": BOARD_SIZE, "periods": periods}


def labels(ids: set[int]) -> dict[int, tuple[str, bool]]:
    """id → (what the leaderboard shows, whether it is a display name) for each contributor
    of `ids` who is listed; the unlisted (and the deleted) are absent. Two queries."""
    people = Contributor.objects.filter(pk__in=ids).exclude(leaderboard=HIDDEN)
    wallets = dict(
        Wallet.objects.filter(contributor_id__in=ids, is_payout=True).values_list(
            "contributor_id", "address"
        )
    )
    out = {}
    for pk, username, display_name, choice in people.values_list(
        "pk", "username", "display_name", "leaderboard"
    ):
        if choice == Contributor.Leaderboard.NAME and display_name:
            out[pk] = (display_name, True)
        else:
            address = wallets.get(pk) or (username if username.startswith("0x") else "")
            out[pk] = (shorten(address) if address else f"contributor {pk}", False)
    return out
