"""Fixed-window rate limits kept in the shared cache, so every web process counts together.

On Redis a hit is one round trip: SET NX EX and INCR in a pipeline (`portal.hotcache`; atomic
each, and the counter is created with its expiry). Other caches go through Django's `add`/`incr`.
Django's file cache implements both as read-then-write, so with it the count is kept under an
exclusive file lock: the embedded default stays exact across gunicorn workers, at the cost of
a lock per hit.
"""

import fcntl
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.core.cache import cache, caches
from django.core.cache.backends.filebased import FileBasedCache

from portal import hotcache
from portal.api_errors import ApiError


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: int
    fetched: str | None = None  # the cache entry `hit(..., fetch=…)` read on the way


@contextmanager
def _serialised():
    backend = caches["default"]
    if not isinstance(backend, FileBasedCache):
        yield
        return
    lock_path = Path(backend._dir) / ".ratelimit.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def hit(scope: str, key: str, limit: int, window_s: int = 60, fetch: str = "") -> Verdict:
    """Count one attempt of `key` in `scope`; refuse past `limit` per window.

    `fetch` names a text entry of the cache to read in the same round trip (`Verdict.fetched`).
    """
    now = time.time()
    window = int(now // window_s)
    cache_key = f"ratelimit:{scope}:{key}:{window}"
    count, fetched = hotcache.count_hit(cache_key, window_s + 5, fetch)
    if count is None:
        fetched = hotcache.get_text(fetch) if fetch else None
        with _serialised():
            if cache.add(cache_key, 1, timeout=window_s + 5):
                count = 1
            else:
                try:
                    count = cache.incr(cache_key)
                except ValueError:  # expired between add and incr
                    cache.add(cache_key, 1, timeout=window_s + 5)
                    count = 1
    retry_after = max(1, int((window + 1) * window_s - now) + 1)
    return Verdict(allowed=count <= limit, retry_after_s=retry_after, fetched=fetched)


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
    cache.delete(f"ratelimit:{scope}:{key}:{int(time.time() // window_s)}")
