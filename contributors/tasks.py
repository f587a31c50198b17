"""Celery tasks of the contributors app: telemetry ingestion, its sweeper, housekeeping.

Tasks are thin: JSON arguments (primary keys), one domain call each.
"""

import logging
import time
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError

from contributors import ingest
from contributors.models import SignInNonce
from portal import hotcache

log = logging.getLogger(__name__)

# What a drain or an ingest may meet that passes by itself: a database restarting, locked or
# dropping connections, a broker or cache that is down for a moment. The task runs again later
# (1, 2, 4 … 30 s); whatever it had not committed is still pending.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, RedisError, KombuOperationalError)

# After a failed publish this process stops trying for a while: during a broker outage each
# telemetry request would otherwise spend the connect timeout, holding a web worker, for a
# batch that is already durable and that a drain or the sweeper stores once the broker is back.
BROKER_BACKOFF_S = 2.0
_broker_down_until = 0.0

# "A drain of this slot is queued or running, and will look for new batches before it ends": a
# lease, not a lock. A running drain renews it on every pass, so it never lapses under a drain
# that is working; a drain that was lost (its worker killed, its message gone with a broker)
# stops renewing it, and within DRAIN_FLAG_TTL_S the next request, or the sweeper, asks for a
# new one. A lease that lapses under a drain that is only slow costs one more drain, which
# takes other batches (they never take the same one) or finds none and ends.
DRAIN_FLAG = "ingest:drain:{slot}"
DRAIN_FLAG_TTL_S = 3
# A drain waits this long between clearing its flag and its last look. So a web process that
# saw the flag set less than half of it ago may skip asking again: that look comes after its
# commit (the flag was cleared after the process saw it, and the look comes a grace later).
DRAIN_GRACE_S = 0.2
_flag_seen_at: dict[int, float] = {}
# With the cache down no flag can say that a drain is on its way: each process then asks for
# a drain of a slot at most this often (a drain stores everything pending before it ends).
BLIND_DRAIN_EVERY_S = 1.0
_blind_drain_at: dict[int, float] = {}


def _publish(task, args: list, what: str, force: bool) -> bool:
    global _broker_down_until
    if not force and time.monotonic() < _broker_down_until:
        return False
    try:
        task.apply_async(args=args, retry=False)
    except Exception:  # any broker failure; the batch is safe in the database
        _broker_down_until = time.monotonic() + BROKER_BACKOFF_S
        log.warning(
            "could not enqueue %s; not trying again for %.0f s, a drain or the sweeper will",
            what,
            BROKER_BACKOFF_S,
            exc_info=True,
        )
        return False
    return True


def enqueue_ingest(batch_pk: int, *, force: bool = False) -> bool:
    """Send one batch to a worker; False (and logged) if the broker is down: the sweeper retries.

    `force` ignores the backoff (admins use it: they are not in a hurry).
    """
    return _publish(ingest_batch, [batch_pk], f"batch {batch_pk}", force)


def _ensure_drain(slot: int, force: bool) -> str:
    """What became of a drain of `slot`: "covered" (one is on its way), "sent" (this call sent
    one) or "failed" (the broker is down)."""
    now = time.monotonic()
    if now - _flag_seen_at.get(slot, -DRAIN_GRACE_S) < DRAIN_GRACE_S / 2:
        return "covered"  # under load: most batches are covered without a round trip
    flag = DRAIN_FLAG.format(slot=slot)
    added = hotcache.add_flag(flag, DRAIN_FLAG_TTL_S)
    if added is False:
        _flag_seen_at[slot] = now
        return "covered"
    if added is None:  # the cache is down
        if now - _blind_drain_at.get(slot, -BLIND_DRAIN_EVERY_S) < BLIND_DRAIN_EVERY_S:
            return "covered"
        _blind_drain_at[slot] = now
    if not _publish(drain_batches, [slot], f"a drain of slot {slot}", force):
        if added:
            hotcache.delete(flag)
        return "failed"
    if added:
        _flag_seen_at[slot] = now
    return "sent"


def request_drain(node_pk: int) -> bool:
    """After a batch of `node_pk` committed: make sure a drain will look for it.

    One message per drain slot at a time instead of one per batch: if the slot's flag is set,
    its drain has not yet made its final check (`drain_batches` clears the flag before it), so
    that check comes after this batch's commit and claims it. True if a drain will run.

    Never raises: it runs after the commit, when the batch is durable and answered 202 whatever
    happens here (a drain or the sweeper stores it later).
    """
    try:
        return _ensure_drain(node_pk % settings.INGEST_DRAINS, force=False) != "failed"
    except Exception:
        log.exception("could not ask for a drain after a batch of node %s", node_pk)
        return False


@shared_task(
    name="contributors.ingest_batch",
    bind=True,
    ignore_result=True,
    acks_late=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=8,
)
def ingest_batch(self, batch_pk: int) -> int:
    """Store one named batch (the admin action sends these)."""
    try:
        return ingest.ingest(batch_pk)
    except TRANSIENT_ERRORS:
        raise
    except DatabaseError as exc:
        ingest.record_failure(batch_pk, f"{type(exc).__name__}: {exc}")
        raise


@shared_task(
    name="contributors.drain_batches",
    bind=True,
    ignore_result=True,
    acks_late=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=8,
)
def drain_batches(self, slot: int) -> int:
    """Store pending batches, many per transaction, until none is left; returns the samples.

    When a pass took fewer batches than it could, the drain waits INGEST_DRAIN_PAUSE_S before
    the next, so that under load each transaction stores dozens of batches instead of one or
    two (the cost of a transaction is mostly per statement, not per row). It runs at most
    INGEST_DRAIN_MAX_S, then hands over to a fresh message, so that other tasks get their turn
    and no drain outlives the task time limit. Before it ends it clears its slot's flag and,
    DRAIN_GRACE_S later, looks once more: a batch committed after that look finds the flag
    clear and publishes a new drain (see `request_drain`).
    """
    flag = DRAIN_FLAG.format(slot=slot)
    deadline = time.monotonic() + settings.INGEST_DRAIN_MAX_S
    stored = 0
    while True:
        hotcache.set_text(flag, "1", DRAIN_FLAG_TTL_S)  # the lease, renewed on every pass
        taken, samples = ingest.drain()
        stored += samples
        if taken:
            if time.monotonic() > deadline:
                if not _publish(drain_batches, [slot], f"a drain of slot {slot}", True):
                    hotcache.delete(flag)
                return stored
            if taken < settings.INGEST_DRAIN_BATCHES:
                time.sleep(settings.INGEST_DRAIN_PAUSE_S)
            continue
        hotcache.delete(flag)
        time.sleep(DRAIN_GRACE_S)
        taken, samples = ingest.drain()
        stored += samples
        # Nothing new, or a newer drain of this slot takes over (with the cache down nobody
        # can tell: this one goes on).
        if not taken or hotcache.add_flag(flag, DRAIN_FLAG_TTL_S) is False:
            return stored


@shared_task(name="contributors.refresh_rollups", ignore_result=True, acks_late=True)
def refresh_rollups() -> int:
    """Redo the minute and hour rollups where samples arrived since the last run."""
    from contributors import rollups

    return rollups.run()


@shared_task(name="contributors.sweep_pending_batches", ignore_result=True)
def sweep_pending_batches() -> int:
    """Ask for a drain of every slot whose flag is clear while a batch has been pending longer
    than INGEST_SWEEP_AFTER_S: its drain was lost (a killed worker, a broker that lost its
    queue, a cache or broker that was down) and no request came since to ask for another.
    Returns the drains sent. Drains, not one message per batch: a drain stores every pending
    batch, oldest first, and does not wait behind thousands of messages."""
    if not ingest.stale_batch_ids(limit=1):
        return 0
    outcomes = [_ensure_drain(slot, force=True) for slot in range(settings.INGEST_DRAINS)]
    sent = outcomes.count("sent")
    if sent:
        log.info("sweeper found batches waiting and sent %s drains", sent)
    return sent


@shared_task(name="contributors.prune_telemetry", ignore_result=True, acks_late=True)
def prune_telemetry() -> dict:
    """Apply the retention settings (raw samples, minute rollups, processed batches)."""
    from contributors import retention

    removed = retention.prune()
    log.info("retention removed %s", removed)
    return removed


@shared_task(name="contributors.prune_signin_nonces", ignore_result=True)
def prune_signin_nonces() -> int:
    """Delete nonces past their lifetime; a spent or expired nonce can never sign in again."""
    cutoff = timezone.now() - timedelta(seconds=settings.SIWE_NONCE_TTL_S * 2)
    deleted, _ = SignInNonce.objects.filter(issued_at__lt=cutoff).delete()
    return deleted
