"""Health of the parts the portal needs: the database, the broker and the shared cache."""

import secrets
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from kombu import Connection

from portal.tasks import HEARTBEAT_KEY


@dataclass
class Check:
    ok: bool
    latency_ms: float
    error: str = ""

    def as_dict(self) -> dict:
        out = {"ok": self.ok, "latency_ms": round(self.latency_ms, 1)}
        if self.error:
            out["error"] = self.error
        return out


def _timed(probe) -> Check:
    started = time.perf_counter()
    try:
        probe()
    except Exception as exc:  # noqa: BLE001 - any failure means "down"; the message says why
        return Check(False, (time.perf_counter() - started) * 1000, f"{type(exc).__name__}: {exc}")
    return Check(True, (time.perf_counter() - started) * 1000)


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _broker() -> None:
    with Connection(
        settings.CELERY_BROKER_URL,
        transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        connect_timeout=2,
    ) as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        # A channel proves the transport works, not only that a socket opened.
        conn.default_channel  # noqa: B018


def _cache() -> None:
    key = f"portal:healthz:{secrets.token_hex(8)}"
    cache.set(key, "1", timeout=10)
    if cache.get(key) != "1":
        raise RuntimeError("a value written to the cache could not be read back")
    cache.delete(key)


def run_checks() -> dict[str, Check]:
    return {"database": _timed(_database), "broker": _timed(_broker), "cache": _timed(_cache)}


def worker_heartbeat_age_s() -> float | None:
    """Seconds since a worker last ran the heartbeat task, or None if never seen (or no cache)."""
    try:
        raw = cache.get(HEARTBEAT_KEY)
    except Exception:  # noqa: BLE001 - the cache check already reports the cache being down
        return None
    seen = parse_datetime(raw) if raw else None
    return None if seen is None else (timezone.now() - seen).total_seconds()
