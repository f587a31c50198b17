"""Celery tasks of the contributors app: telemetry ingestion, its sweeper, housekeeping.

Tasks are thin: JSON arguments (primary keys), one domain call each.
"""

import logging
import time
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError, OperationalError
from django.utils import timezone

from contributors import ingest
from contributors.models import SignInNonce
from portal import hotcache

log = logging.getLogger(__name__)


# After a failed publish this process stops trying for a while: during a broker outage each
# telemetry request would otherwise spend the connect timeout, holding a web worker, for a
# batch that is already durable and that the sweeper enqueues once the broker is back.
BROKER_BACKOFF_S = 10.0
_broker_down_until = 0.0

# "A drain of this slot is queued or running, and will look for new batches before it ends."
# A running drain renews it on every pass, so it never lapses under a drain that is working;
# the time to live only matters if that drain was lost (a killed worker on a broker that does
# not redeliver): the first request after it publishes a new one.
DRAIN_FLAG = "ingest:drain:{slot}"
DRAIN_FLAG_TTL_S = 30
# A drain waits this long between clearing its flag and its last look. So a web process that
# saw the flag set less than half of it ago may skip asking again: that look comes after its
# commit (the flag was cleared after the process saw it, and the look comes a grace later).
DRAIN_GRACE_S = 0.2
_flag_seen_at: dict[int, float] = {}


def _publish(task, args: list, what: str, force: bool) -> bool:
    global _broker_down_until
    if not force and time.monotonic() < _broker_down_until:
        return False
    try:
        task.apply_async(args=args, retry=False)
    except Exception:  # any broker failure; the batch is safe in the database
        _broker_down_until = time.monotonic() + BROKER_BACKOFF_S
        log.warning(
            "could not enqueue %s; not trying again for %.0f s, the sweeper will",
            what,
            BROKER_BACKOFF_S,
            exc_info=True,
        )
        return False
    return True


def enqueue_ingest(batch_pk: int, *, force: bool = False) -> bool:
    """Send one batch to a worker; False (and logged) if the broker is down: the sweeper retries.

    `force` ignores the backoff (the sweeper and admins use it: they are not in a hurry).
    """
    return _publish(ingest_batch, [batch_pk], f"batch {batch_pk}", force)


def request_drain(node_pk: int) -> bool:
    """After a batch of `node_pk` committed: make sure a drain will look for it.

    One message per drain slot at a time instead of one per batch: if the slot's flag is set,
    its drain has not yet made its final check (`drain_batches` clears the flag before it), so
    that check comes after this batch's commit and claims it. True if a drain will run.
    """
    slot = node_pk % settings.INGEST_DRAINS
    now = time.monotonic()
    if now - _flag_seen_at.get(slot, -DRAIN_GRACE_S) < DRAIN_GRACE_S / 2:
        return True  # under load: most batches are covered without a round trip to the cache
    flag = DRAIN_FLAG.format(slot=slot)
    if not hotcache.add_flag(flag, DRAIN_FLAG_TTL_S):
        _flag_seen_at[slot] = now
        return True
    if _publish(drain_batches, [slot], f"a drain of slot {slot}", force=False):
        _flag_seen_at[slot] = now
        return True
    hotcache.delete(flag)
    return False


@shared_task(
    name="contributors.ingest_batch",
    bind=True,
    ignore_result=True,
    acks_late=True,
    max_retries=5,
)
def ingest_batch(self, batch_pk: int) -> int:
    """Store one named batch (the sweeper and the admin action send these)."""
    try:
        return ingest.ingest(batch_pk)
    except OperationalError as exc:  # a locked or restarting database: try again soon
        raise self.retry(exc=exc, countdown=min(2**self.request.retries, 30)) from None
    except DatabaseError as exc:
        ingest.record_failure(batch_pk, f"{type(exc).__name__}: {exc}")
        raise


@shared_task(
    name="contributors.drain_batches",
    bind=True,
    ignore_result=True,
    acks_late=True,
    max_retries=5,
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
    try:
        while True:
            taken, samples = ingest.drain()
            stored += samples
            if taken:
                hotcache.set_text(flag, "1", DRAIN_FLAG_TTL_S)  # renewed
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
            if not taken or not hotcache.add_flag(flag, DRAIN_FLAG_TTL_S):
                return stored  # nothing new, or a newer drain of this slot takes over
    except OperationalError as exc:  # a locked or restarting database: try again soon
        hotcache.add_flag(flag, DRAIN_FLAG_TTL_S)
        raise self.retry(exc=exc, countdown=min(2**self.request.retries, 30)) from None


@shared_task(name="contributors.refresh_rollups", ignore_result=True, acks_late=True)
def refresh_rollups() -> int:
    """Redo the minute and hour rollups where samples arrived since the last run."""
    from contributors import rollups

    return rollups.run()


@shared_task(name="contributors.sweep_pending_batches", ignore_result=True)
def sweep_pending_batches() -> int:
    """Enqueue again every batch still pending after INGEST_SWEEP_AFTER_S."""
    ids = ingest.stale_batch_ids()
    sent = sum(enqueue_ingest(pk, force=True) for pk in ids)
    if ids:
        log.info("sweeper re-enqueued %s of %s pending batches", sent, len(ids))
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
