"""Where the public figures live between beat runs: the shared cache, one entry for /network/
and one for /leaderboard/ (every board of every period), kept until the next run replaces them.

Requests only read them. When nothing was computed yet (a fresh deployment, a cache that was
emptied), a request queues the beat task's computation (at most once a minute, a flag in the
cache) and answers that the figures are being computed; a cache or broker that does not
answer means the same.

A contributor's listing choice must hold everywhere at once, cached boards included, so the
boards are named (`leaderboard.labels`) right before they are stored, and again whenever a
contributor changes their choice (`relabel`). A generation counter closes the race between
the two: a compute that named its boards before the change committed sees the counter move
after storing them, and names them again.
"""

import copy
import logging

from django.core.cache import cache
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from portal.lib.hotcache import ERRORS
from rewards.public import leaderboard, network

log = logging.getLogger(__name__)

NETWORK_KEY = "public:network:v1"
LEADERBOARD_KEY = "public:leaderboard:v1"
GENERATION_KEY = "public:labels-generation"
LOCK_KEY = "public:computing"
LOCK_S = 60
# Tries to store the boards with the latest listing choices while they keep changing.
LABEL_ATTEMPTS = 5


def compute_all(now=None) -> dict:
    """Compute and store every public figure as of `now`; what was stored."""
    now = now or timezone.now()
    figures = network.compute(now)
    cache.set(NETWORK_KEY, figures, timeout=None)
    boards = store_leaderboard(leaderboard.compute(now))
    return {"network": figures, "leaderboard": boards}


def _generation() -> int:
    return cache.get(GENERATION_KEY, 0)


def _bump_generation() -> None:
    for _ in range(3):
        try:
            cache.incr(GENERATION_KEY)
            return
        except ValueError:  # no counter yet
            if cache.add(GENERATION_KEY, 1, timeout=None):
                return


def named(boards: dict) -> dict:
    """`boards` with the listing choices as they are now: the unlisted removed, the others
    named, ranks numbered again from 1 (so nobody leaves a gap)."""
    boards = copy.deepcopy(boards)
    ids = {
        row["cid"]
        for period in boards["periods"].values()
        for rows in period["boards"].values()
        for row in rows
    }
    names = leaderboard.labels(ids) if ids else {}
    for period in boards["periods"].values():
        for board, rows in period["boards"].items():
            kept = [row for row in rows if row["cid"] in names]
            for rank, row in enumerate(kept, start=1):
                row["rank"] = rank
                row["name"], row["named"] = names[row["cid"]]
            period["boards"][board] = kept
    return boards


def store_leaderboard(boards: dict) -> dict:
    """Store `boards` named with the latest listing choices (module docstring)."""
    for _ in range(LABEL_ATTEMPTS):
        generation = _generation()
        stored = named(boards)
        cache.set(LEADERBOARD_KEY, stored, timeout=None)
        if _generation() == generation:
            break
    return stored


def relabel() -> None:
    """A contributor changed how they are listed (call after the change committed): the stored
    boards show it at once, without waiting for the next run."""
    _bump_generation()
    boards = cache.get(LEADERBOARD_KEY)
    if boards is not None:
        store_leaderboard(boards)


def read(key: str) -> dict | None:
    """What is stored under `key`, or None ("computing"): a request never computes figures (the
    work grows with the network); finding none, it asks a worker for them, at most once a
    LOCK_S. None too while the cache does not answer."""
    try:
        figures = cache.get(key)
        if figures is None and cache.add(LOCK_KEY, 1, timeout=LOCK_S):
            from rewards.public.tasks import compute_public_stats

            compute_public_stats.delay()
    except (*ERRORS, BrokerError) as exc:
        log.warning("public figures unavailable: the cache or broker did not answer (%s)", exc)
        return None
    return figures


def public_row(row: dict) -> dict:
    """A leaderboard row as served: without the contributor's id."""
    return {name: value for name, value in row.items() if name != "cid"}
