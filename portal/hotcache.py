"""The shared cache on the request hot path: one round trip per operation on Redis.

Django's Redis backend builds a new client object for every call and its `incr` costs two round
trips (EXISTS, then INCRBY); on the telemetry path, hit hundreds of times a second per process,
that is a measurable share of the request. Here one client per connection pool is kept and each
operation is a single command or pipeline, on the same keys Django's cache API uses, so
`cache.get`/`cache.delete` see what these functions wrote. Other backends go through Django's
cache API unchanged.
"""

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from redis import Redis

_clients: dict[int, Redis] = {}


def redis_client(backend) -> Redis | None:
    """A reusable client on the backend's own write pool, or None if it is not Redis."""
    if not isinstance(backend, RedisCache):
        return None
    pool = backend._cache._get_connection_pool(write=True)  # Django's pool, pinned version
    client = _clients.get(id(pool))
    if client is None:
        client = _clients[id(pool)] = Redis(connection_pool=pool)
    return client


def count_hit(cache_key: str, ttl_s: int) -> int | None:
    """INCR + EXPIRE NX in one pipeline: the new count, or None if the cache is not Redis."""
    backend = caches["default"]
    client = redis_client(backend)
    if client is None:
        return None
    key = backend.make_and_validate_key(cache_key)
    pipe = client.pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, ttl_s, nx=True)
    count, _ = pipe.execute()
    return count


def add_flag(cache_key: str, ttl_s: int) -> bool:
    """Set `cache_key` unless it is set (SET NX EX on Redis); True if this call set it."""
    backend = caches["default"]
    client = redis_client(backend)
    if client is None:
        return backend.add(cache_key, 1, timeout=ttl_s)
    return bool(client.set(backend.make_and_validate_key(cache_key), 1, ex=ttl_s, nx=True))
