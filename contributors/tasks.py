"""Celery tasks of the contributors app: telemetry ingestion, its sweeper, housekeeping.

Tasks are thin: JSON arguments (primary keys), one domain call each.
"""

import logging
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


def enqueue_ingest(batch_pk: int) -> bool:
    """Send the batch to a worker; False (and logged) if the broker is down: the sweeper retries."""
    try:
        ingest_batch.apply_async(args=[batch_pk], retry=False)
    except Exception:
        log.warning("could not enqueue batch %s; the sweeper will", batch_pk, exc_info=True)
        return False
    return True


@shared_task(name="contributors.sweep_pending_batches", ignore_result=True)
def sweep_pending_batches() -> int:
    """Enqueue again every batch still pending after INGEST_SWEEP_AFTER_S."""
    ids = ingest.stale_batch_ids()
    sent = sum(enqueue_ingest(pk) for pk in ids)
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
