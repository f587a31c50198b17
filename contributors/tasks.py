"""Celery tasks of the contributors app: telemetry ingestion, its sweeper, housekeeping.

Tasks are thin: JSON arguments (primary keys, slots), one domain call each. Periodic ones are
scheduled in portal/schedule.py.
"""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError

from contributors.models import SignInNonce
from contributors.telemetry import dispatch, rollups, store

log = logging.getLogger(__name__)

# What a drain or an ingest may meet that passes by itself: a database restarting, locked or
# dropping connections, a broker or cache that is down for a moment. The task runs again later
# (1, 2, 4 … 30 s); whatever it had not committed is still pending.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, RedisError, KombuOperationalError)
RETRY_TRANSIENT = {
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "max_retries": 8,
}


@shared_task(
    name="contributors.ingest_batch",
    bind=True,
    ignore_result=True,
    acks_late=True,
    **RETRY_TRANSIENT,
)
def ingest_batch(self, batch_pk: int) -> int:
    """Store one named batch (the admin action sends these)."""
    try:
        return store.ingest(batch_pk)
    except TRANSIENT_ERRORS:
        raise
    except DatabaseError as exc:
        store.record_failure(batch_pk, f"{type(exc).__name__}: {exc}")
        raise


@shared_task(
    name="contributors.drain_batches",
    bind=True,
    ignore_result=True,
    acks_late=True,
    **RETRY_TRANSIENT,
)
def drain_batches(self, slot: int) -> int:
    """Store pending batches until none is left (`dispatch.run_drain`); returns the samples."""
    return dispatch.run_drain(slot)


@shared_task(name="contributors.refresh_rollups", ignore_result=True, acks_late=True)
def refresh_rollups() -> int:
    """Redo the minute and hour rollups where samples arrived since the last run."""
    return rollups.run()


@shared_task(name="contributors.sweep_pending_batches", ignore_result=True)
def sweep_pending_batches() -> int:
    """Ask for drains if a batch waits longer than INGEST_SWEEP_AFTER_S (`dispatch.sweep`)."""
    return dispatch.sweep()


@shared_task(name="contributors.prune_telemetry", ignore_result=True, acks_late=True)
def prune_telemetry() -> dict:
    """Apply the retention settings (raw samples, minute rollups, processed batches)."""
    from contributors import retention

    removed = retention.prune()
    log.info("retention removed %s", removed)
    return removed


@shared_task(name="contributors.ensure_sample_partitions", ignore_result=True, acks_late=True)
def ensure_sample_partitions() -> dict:
    """Create the raw samples' day partitions of today and the next
    SAMPLE_PARTITIONS_AHEAD_DAYS days (PostgreSQL; nothing on SQLite)."""
    from contributors import partitions

    created = partitions.ensure_partitions()
    if created:
        log.info("sample partitions created (rows moved from the default): %s", created)
    return created


@shared_task(name="contributors.prune_signin_nonces", ignore_result=True)
def prune_signin_nonces() -> int:
    """Delete nonces past their lifetime; a spent or expired nonce can never sign in again."""
    cutoff = timezone.now() - timedelta(seconds=settings.SIWE_NONCE_TTL_S * 2)
    deleted, _ = SignInNonce.objects.filter(issued_at__lt=cutoff).delete()
    return deleted


@shared_task(
    name="contributors.check_challenge",
    ignore_result=True,
    acks_late=True,
    **RETRY_TRANSIENT,
)
def check_challenge(challenge_pk: int) -> str:
    """Decide a revealed proof-of-GPU challenge (`verification.challenges.check`); a
    redelivered task finds it decided and does nothing."""
    from contributors.verification import challenges

    decided = challenges.check(challenge_pk)
    return "" if decided is None else decided.status


@shared_task(name="contributors.sweep_challenges", ignore_result=True)
def sweep_challenges() -> dict:
    """Fail challenges past their deadlines, recheck lost checks, issue the ones due."""
    from contributors.verification import challenges

    return challenges.sweep()


@shared_task(name="contributors.evaluate_alerts", ignore_result=True, acks_late=True)
def evaluate_alerts() -> dict:
    """Raise the alerts that are due and queue their deliveries (`alerts.evaluate.run`)."""
    from contributors.alerts import evaluate

    return evaluate.run()


@shared_task(
    name="contributors.deliver_alert",
    ignore_result=True,
    acks_late=True,
    # Within the delivery's lease: the soft limit ends a send as a failed attempt (retried
    # later), the hard one ends the process; another worker never sends it at the same time.
    soft_time_limit=settings.ALERT_DELIVERY_LEASE_S - 10,
    time_limit=settings.ALERT_DELIVERY_LEASE_S - 5,
    **RETRY_TRANSIENT,
)
def deliver_alert(delivery_pk: int) -> str:
    """Send one alert delivery; a redelivered or duplicate task finds it taken and skips."""
    from contributors.alerts import delivery

    return delivery.deliver(delivery_pk)
