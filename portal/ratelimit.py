"""Fixed-window rate limits kept in the shared cache, so every web process counts together."""

import time
from dataclasses import dataclass

from django.core.cache import cache


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: int


def hit(scope: str, key: str, limit: int, window_s: int = 60) -> Verdict:
    """Count one attempt of `key` in `scope`; refuse past `limit` per window."""
    now = time.time()
    window = int(now // window_s)
    cache_key = f"ratelimit:{scope}:{key}:{window}"
    # add() is atomic on every backend we use; incr() then counts without a read-modify-write.
    if not cache.add(cache_key, 1, timeout=window_s + 5):
        try:
            count = cache.incr(cache_key)
        except ValueError:  # expired between add and incr
            cache.add(cache_key, 1, timeout=window_s + 5)
            count = 1
    else:
        count = 1
    retry_after = max(1, int((window + 1) * window_s - now) + 1)
    return Verdict(allowed=count <= limit, retry_after_s=retry_after)
