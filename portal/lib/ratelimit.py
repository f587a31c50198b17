"""Fixed-window rate limits, counted where every web process sees them and nothing evicts them.

On Redis (the production cache) a hit is one round trip: SET NX EX and INCR in a pipeline
(`portal.lib.hotcache`; atomic each, and the counter is created with its expiry). With any other
cache the counters live in a small SQLite file of their own, `ratelimit.sqlite3` in the file
cache's folder (in VAR_DIR for other caches): Django's file cache culls a third of its entries
at random once it holds MAX_ENTRIES, counters included, and a flood of made-up keys is exactly
what fills it; its add/incr are also read-then-write across processes. SQLite counts atomically
across processes with one upsert, and a window's rows go only once the window is over.

When the counters cannot be reached (Redis down or not answering, the file not writable), every
process counts on its own until they are back. Every limit (telemetry per node, sign-in, nonces,
enrollment and bad tokens per address) then still holds per process: the portal admits at most
its number of web processes times the limit. Refusing instead (503) would stop every agent and
every sign-in while the database, which keeps everything that matters, is up; not counting at
all would leave a flood without any bound.
"""

import logging
import sqlite3
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.filebased import FileBasedCache

from portal.lib import hotcache
from portal.lib.errors import ApiError

log = logging.getLogger(__name__)

STORE_NAME = "ratelimit.sqlite3"
STORE_TIMEOUT_S = 2.0  # a writer waits this long for another process's upsert


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: int
    fetched: str | None = None  # the cache entry `hit(..., fetch=…)` read on the way


class _Window:
    """One fixed window of `window_s` seconds: its number and when it ends (epoch seconds)."""

    def __init__(self, window_s: int):
        self.now = time.time()
        self.number = int(self.now // window_s)
        self.ends_at = (self.number + 1) * window_s
        self.retry_after_s = max(1, int(self.ends_at - self.now) + 1)


# --- the SQLite store (caches other than Redis) ------------------------------------------------

_UPSERT = (
    "INSERT INTO counters (name, ends_at, count) VALUES (?, ?, 1) "
    "ON CONFLICT (name) DO UPDATE SET "
    "count = CASE WHEN counters.ends_at = excluded.ends_at THEN counters.count + 1 ELSE 1 END, "
    "ends_at = excluded.ends_at "
    "RETURNING count"
)
_local_store = threading.local()  # sqlite3 connections belong to the thread that opened them


def store_path() -> Path:
    backend = caches["default"]
    folder = Path(backend._dir) if isinstance(backend, FileBasedCache) else settings.VAR_DIR
    return folder / STORE_NAME


def _store() -> sqlite3.Connection:
    path = store_path()
    conn = getattr(_local_store, "conn", None)
    if conn is not None:
        if _local_store.path == path:
            return conn
        _drop_store()  # the cache was configured anew (tests do)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=STORE_TIMEOUT_S, isolation_level=None)
    # Counters are worth less than an fsync per request: losing the last ones to a power cut
    # only lets a few more requests through.
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS counters "
        "(name TEXT PRIMARY KEY, ends_at INTEGER NOT NULL, count INTEGER NOT NULL) WITHOUT ROWID"
    )
    _local_store.conn, _local_store.path, _local_store.pruned_at = conn, path, 0.0
    return conn


def _drop_store() -> None:
    conn = getattr(_local_store, "conn", None)
    _local_store.conn = None
    if conn is not None:
        with suppress(sqlite3.Error):
            conn.close()


def _count_in_store(name: str, window: _Window) -> int:
    conn = _store()
    (count,) = conn.execute(_UPSERT, (name, window.ends_at)).fetchone()
    if window.now - _local_store.pruned_at > 60:
        _local_store.pruned_at = window.now
        conn.execute("DELETE FROM counters WHERE ends_at < ?", (window.now,))
    return count


# --- counting in this process while the shared counters are out of reach -------------------

_LOCAL_MAX = 100_000
_here: dict[str, tuple[int, int]] = {}  # name -> (window end, count)
_here_lock = threading.Lock()


def _count_here(name: str, window: _Window) -> int:
    with _here_lock:
        ends_at, count = _here.get(name, (0, 0))
        count = count + 1 if ends_at == window.ends_at else 1
        _here[name] = (window.ends_at, count)
        if len(_here) > _LOCAL_MAX:
            for stale in [n for n, (end, _) in _here.items() if end < window.now]:
                del _here[stale]
            if len(_here) > _LOCAL_MAX:  # a flood of distinct keys within one window
                _here.clear()
        return count


# --- the API ---------------------------------------------------------------------------------


def hit(scope: str, key: str, limit: int, window_s: int = 60, fetch: str = "") -> Verdict:
    """Count one attempt of `key` in `scope`; refuse past `limit` per window.

    `fetch` names a text entry of the cache to read in the same round trip (`Verdict.fetched`;
    None when the cache is down).
    """
    window = _Window(window_s)
    name = f"{scope}:{key}"
    try:
        count, fetched = hotcache.count_hit(
            f"ratelimit:{name}:{window.number}", window_s + 5, fetch
        )
    except hotcache.Unavailable:
        count, fetched = _count_here(name, window), None
    if count is None:  # not Redis
        fetched = hotcache.get_text(fetch) if fetch else None
        try:
            count = _count_in_store(name, window)
        except (sqlite3.Error, OSError) as exc:
            log.warning("rate-limit store %s failed (%s); counting in this process", name, exc)
            _drop_store()
            count = _count_here(name, window)
    return Verdict(allowed=count <= limit, retry_after_s=window.retry_after_s, fetched=fetched)


def enforce(scope: str, key: str, limit: int, detail: str, fetch: str = "") -> str | None:
    """Count one attempt; past the limit, a 429 `throttled` with Retry-After.

    Returns the `fetch` entry (see `hit`)."""
    verdict = hit(scope, key, limit, fetch=fetch)
    if not verdict.allowed:
        raise ApiError(
            429, "throttled", detail, headers={"Retry-After": str(verdict.retry_after_s)}
        )
    return verdict.fetched


def forget(scope: str, key: str, window_s: int = 60) -> None:
    """Drop the current window's counter of `key` (a token found not to be valid leaves nothing
    behind, so a flood of made-up tokens cannot fill the cache)."""
    window = _Window(window_s)
    name = f"{scope}:{key}"
    with _here_lock:
        _here.pop(name, None)
    if hotcache.redis_client(caches["default"]) is not None:
        hotcache.delete(f"ratelimit:{name}:{window.number}")
        return
    try:
        _store().execute("DELETE FROM counters WHERE name = ?", (name,))
    except (sqlite3.Error, OSError):
        _drop_store()


def clear() -> None:
    """Forget every counter (tests start from none; on Redis `cache.clear()` drops them too)."""
    with _here_lock:
        _here.clear()
    if hotcache.redis_client(caches["default"]) is not None:
        return
    try:
        _store().execute("DELETE FROM counters")
    except (sqlite3.Error, OSError):
        _drop_store()
