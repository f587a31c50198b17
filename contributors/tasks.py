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

log = logging.getLogger(__name__)


@shared_task(
    name="contributors.ingest_batch",
    bind=True,
    ignore_result=True,
    acks_late=True,
    max_retries=5,
)
def ingest_batch(self, batch_pk: int) -> int:
    try:
        return ingest.ingest(batch_pk)
    except OperationalError as exc:  # a locked or restarting database: try again soon
        raise self.retry(exc=exc, countdown=min(2**self.request.retries, 30)) from None
    except DatabaseError as exc:
        ingest.record_failure(batch_pk, f"{type(exc).__name__}: {exc}")
        raise


# After a failed publish this process stops trying for a while: during a broker outage each
# telemetry request would otherwise spend the connect timeout, holding a web worker, for a
# batch that is already durable and that the sweeper enqueues once the broker is back.
BROKER_BACKOFF_S = 10.0
_broker_down_until = 0.0


def enqueue_ingest(batch_pk: int, *, force: bool = False) -> bool:
    """Send the batch to a worker; False (and logged) if the broker is down: the sweeper retries.

    `force` ignores the backoff (the sweeper and admins use it: they are not in a hurry).
    """
    global _broker_down_until
    if not force and time.monotonic() < _broker_down_until:
        return False
    try:
        ingest_batch.apply_async(args=[batch_pk], retry=False)
    except Exception:  # any broker failure; the batch is safe in the database
        _broker_down_until = time.monotonic() + BROKER_BACKOFF_S
        log.warning(
            "could not enqueue batch %s; not trying again for %.0f s, the sweeper will",
            batch_pk,
            BROKER_BACKOFF_S,
            exc_info=True,
        )
        return False
    return True


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
