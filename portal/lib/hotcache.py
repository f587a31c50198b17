"""The shared cache on the request hot path: one round trip per operation on Redis.

Django's Redis backend builds a new client object for every call and its `incr` costs two round
trips (EXISTS, then INCRBY); on the telemetry path, hit hundreds of times a second per process,
that is a measurable share of the request. Here one client per connection pool is kept and each
operation is a single command or pipeline, on the same keys Django's cache API uses, so
`cache.get`/`cache.delete` see what these functions wrote. Other backends go through Django's
cache API unchanged.

Nothing stored here is the only copy of anything: a remembered agent is a shortcut past one
query, a drain flag a lease that lapses by itself. So a cache that is down or does not answer
never fails the caller: reads find nothing, writes are dropped, `add_flag` says it cannot tell,
and `count_hit` raises `Unavailable` for the rate limiter to count another way. After a Redis
failure this process leaves Redis alone for `DOWN_BACKOFF_S` (one request per process pays the
socket timeout, not every request), then tries again.
"""

import logging
import time

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from redis import Redis
from redis.exceptions import NoPermissionError, RedisError, ResponseError

log = logging.getLogger(__name__)

# What a cache that is down, restarting, full or unreachable raises: redis-py's errors (refused,
# reset, timed out, still loading its data set) and the file cache's (disk full, folder gone).
ERRORS = (RedisError, OSError)
DOWN_BACKOFF_S = 2.0


class Unavailable(Exception):
    """The shared cache did not answer (or failed just before, see DOWN_BACKOFF_S)."""


# `count_hit` as one script (EVALSHA; redis-py loads it again after a Redis restart): one
# command instead of a pipeline of three, which cost the telemetry request more in redis-py
# than in Redis. SET NX EX creates the counter with its expiry, so the window ends on time.
_COUNT_HIT = """
redis.call('SET', KEYS[1], 0, 'EX', ARGV[1], 'NX')
local count = redis.call('INCR', KEYS[1])
local text = false
if KEYS[2] then text = redis.call('GET', KEYS[2]) end
return {count, text}
"""


class _Link:
    """A reusable client on one of Django's connection pools, and whether it is resting."""

    def __init__(self, pool):
        self.client = Redis(connection_pool=pool)  # keeps the pool, so its id is never reused
        self.count_hit = self.client.register_script(_COUNT_HIT)
        self.scripting = True  # False once Redis refused to run a script
        self.down_until = 0.0


_links: dict[int, _Link] = {}


def _link(backend) -> _Link | None:
    if not isinstance(backend, RedisCache):
        return None
    pool = backend._cache._get_connection_pool(write=True)  # Django's pool, pinned version
    link = _links.get(id(pool))
    if link is None:
        link = _links[id(pool)] = _Link(pool)
    return link


def redis_client(backend) -> Redis | None:
    """A reusable client on the backend's own write pool, or None if it is not Redis."""
    link = _link(backend)
    return None if link is None else link.client


def _usable(link: _Link) -> bool:
    return time.monotonic() >= link.down_until


def _failed(link: _Link | None, what: str, exc: Exception) -> None:
    if link is not None:
        if link.down_until == 0.0 or time.monotonic() >= link.down_until + DOWN_BACKOFF_S:
            # Once per outage (not per request): it began, or came back after a while.
            log.warning(
                "shared cache unreachable (%s: %s); working without it, trying again every %.0f s",
                what,
                exc,
                DOWN_BACKOFF_S,
            )
        link.down_until = time.monotonic() + DOWN_BACKOFF_S
    else:
        log.warning("shared cache failed (%s: %s); working without it", what, exc)


def count_hit(cache_key: str, ttl_s: int, fetch: str = "") -> tuple[int | None, str | None]:
    """SET NX EX + INCR (+ GET of the text entry `fetch`) in one script: the new count and the
    entry, or (None, None) if the cache is not Redis. Raises `Unavailable` when Redis does not
    answer."""
    backend = caches["default"]
    link = _link(backend)
    if link is None:
        return None, None
    if not _usable(link):
        raise Unavailable
    keys = [backend.make_and_validate_key(cache_key)]
    if fetch:
        keys.append(backend.make_and_validate_key(fetch))
    try:
        if link.scripting:
            try:
                count, text = link.count_hit(keys=keys, args=[ttl_s])
            except (NoPermissionError, ResponseError) as exc:
                if not _refuses_scripts(exc):
                    raise
                link.scripting = False  # from now on in this process: the pipeline below
        if not link.scripting:
            count, text = _count_hit_pipelined(link.client, keys, ttl_s)
    except ERRORS as exc:
        _failed(link, "rate limit", exc)
        raise Unavailable from exc
    return count, text.decode() if isinstance(text, bytes) else text


def _count_hit_pipelined(client: Redis, keys: list[str], ttl_s: int) -> tuple[int, bytes | None]:
    """The script's commands as one pipeline, for a Redis (or proxy, or ACL) that refuses
    scripts."""
    pipe = client.pipeline(transaction=False)
    pipe.set(keys[0], 0, ex=ttl_s, nx=True)
    pipe.incr(keys[0])
    if len(keys) > 1:
        pipe.get(keys[1])
    _, count, *fetched = pipe.execute()
    return count, fetched[0] if fetched else None


def _refuses_scripts(exc: Exception) -> bool:
    """Whether Redis refused to run a script at all (ACL without @scripting, EVALSHA renamed
    or disabled), not what the script did."""
    if isinstance(exc, NoPermissionError):
        return True
    text = str(exc).lower()
    return "unknown command" in text or "noperm" in text


def get_text(cache_key: str) -> str | None:
    """A text entry written by `set_text`; None if absent or the cache is down."""
    backend = caches["default"]
    link = _link(backend)
    try:
        if link is None:
            value = backend.get(cache_key)
            return value if isinstance(value, str) else None
        if not _usable(link):
            return None
        value = link.client.get(backend.make_and_validate_key(cache_key))
    except ERRORS as exc:
        _failed(link, "read", exc)
        return None
    return value.decode() if value is not None else None


def set_text(cache_key: str, value: str, ttl_s: int) -> None:
    """Store text as is (raw on Redis, so that a pipeline can read it without unpickling)."""
    backend = caches["default"]
    link = _link(backend)
    try:
        if link is None:
            backend.set(cache_key, value, timeout=ttl_s)
        elif _usable(link):
            link.client.set(backend.make_and_validate_key(cache_key), value, ex=ttl_s)
    except ERRORS as exc:
        _failed(link, "write", exc)


def delete(cache_key: str) -> None:
    backend = caches["default"]
    link = _link(backend)
    try:
        if link is None:
            backend.delete(cache_key)
        elif _usable(link):
            link.client.delete(backend.make_and_validate_key(cache_key))
    except ERRORS as exc:
        _failed(link, "delete", exc)


def add_flag(cache_key: str, ttl_s: int) -> bool | None:
    """Set `cache_key` unless it is set (SET NX EX on Redis); True if this call set it, False
    if it was set, None if the cache is down (nobody can tell)."""
    backend = caches["default"]
    link = _link(backend)
    try:
        if link is None:
            return backend.add(cache_key, 1, timeout=ttl_s)
        if not _usable(link):
            return None
        return bool(link.client.set(backend.make_and_validate_key(cache_key), 1, ex=ttl_s, nx=True))
    except ERRORS as exc:
        _failed(link, "flag", exc)
        return None
