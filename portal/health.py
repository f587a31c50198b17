"""Health of the parts the portal needs: the database, the broker and the shared cache.

The probes run side by side in threads of their own and the answer waits at most
PROBE_DEADLINE_S for them: a part that does not answer (a Redis that accepts connections and
says nothing, a database behind a dropped route) is reported down on time instead of holding
the request, and so the load balancer's check, for as long as the client's timeouts allow. A
probe still running from an earlier check is not started again: a part that hangs costs one
thread per process, not one per check.
"""

import logging
import secrets
import threading
import time
from concurrent.futures import Future, wait
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from kombu import Connection

from portal.tasks import HEARTBEAT_KEY

log = logging.getLogger(__name__)

PROBE_DEADLINE_S = 3.0


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
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()  # this thread's own connection: nothing closes it at request end


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


PROBES = {"database": _database, "broker": _broker, "cache": _cache}

_lock = threading.Lock()
_running: dict[str, tuple[Future, float]] = {}  # per part: the probe under way, since when


def _start(probe) -> Future:
    # A daemon thread of its own: a probe that hangs must not hold the process at exit either.
    future: Future = Future()

    def run():
        future.set_result(_timed(probe))

    threading.Thread(target=run, name="healthz-probe", daemon=True).start()
    return future


def run_checks(deadline_s: float = PROBE_DEADLINE_S) -> dict[str, Check]:
    """Every part's check, within `deadline_s` whatever the parts do."""
    started = time.monotonic()
    with _lock:
        futures = {}
        for name, probe in PROBES.items():
            running = _running.get(name)
            if running is None or running[0].done():
                running = _running[name] = (_start(probe), started)
            futures[name] = running
    wait([future for future, _ in futures.values()], timeout=deadline_s)
    checks = {}
    for name, (future, since) in futures.items():
        if future.done():
            checks[name] = future.result()
        else:
            waited = time.monotonic() - since
            checks[name] = Check(False, waited * 1000, f"no answer after {waited:.1f} s")
    return checks


def worker_heartbeat_age_s() -> float | None:
    """Seconds since a worker last ran the heartbeat task, or None if never seen (or no cache).

    Run it only after the cache answered its check: a cache that hangs would hold it."""
    try:
        raw = cache.get(HEARTBEAT_KEY)
    except Exception:  # noqa: BLE001 - the cache check already reports the cache being down
        return None
    seen = parse_datetime(raw) if raw else None
    return None if seen is None else (timezone.now() - seen).total_seconds()


def relayer_status(deadline_s: float = 2.0) -> dict | None:
    """The claim relayer's address and ETH balance (rewards.relay.status) for staff, within
    `deadline_s`; None when no relayer is configured. A chain node that does not answer is
    reported, and never fails the check: claims wait, nothing else does."""
    from rewards import relay

    if not settings.CLAIM_RELAYER_KEY:
        return None
    result: dict = {}

    def run():
        result["status"] = relay.status()

    thread = threading.Thread(target=run, name="healthz-relayer", daemon=True)
    thread.start()
    thread.join(deadline_s)
    if "status" not in result:
        return {"error": f"the chain node did not answer within {deadline_s:g} s"}
    return result["status"]
