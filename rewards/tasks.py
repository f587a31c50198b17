"""Celery tasks of the rewards app (from beat, see portal/schedule.py): settling due epochs,
watching claims, recording token prices."""

import logging

from celery import shared_task
from django.db import OperationalError

from rewards import settlement

log = logging.getLogger(__name__)


@shared_task(
    name="rewards.settle_due_epochs",
    bind=True,
    ignore_result=True,
    acks_late=True,
    max_retries=3,
    soft_time_limit=600,
    time_limit=660,
)
def settle_due_epochs(self) -> int:
    """Settle every epoch whose grace has passed; safe to run twice, or on two workers at once."""
    try:
        settled = settlement.settle_due()
    except OperationalError as exc:  # a locked or restarting database: try again soon
        raise self.retry(exc=exc, countdown=min(2**self.request.retries * 5, 60)) from None
    if settled or manifests_missing():
        publish_epoch_manifests.delay()
    if settled:
        # Usage sums of epochs settled before the raw samples' retention are of no more use.
        from datetime import timedelta

        from django.conf import settings
        from django.utils import timezone

        from rewards import accumulators

        accumulators.prune(timezone.now() - timedelta(days=settings.RETENTION_RAW_DAYS))
    return len(settled)


def manifests_missing() -> bool:
    """Settled epochs without a published manifest (a lost publish, or epochs settled before
    manifests existed): each settlement run queues a publish of the next ones."""
    from rewards.models import Epoch

    return Epoch.objects.filter(status=Epoch.Status.SETTLED, manifest__isnull=True).exists()


@shared_task(
    name="rewards.publish_epoch_manifests",
    bind=True,
    ignore_result=True,
    acks_late=True,
    max_retries=3,
    soft_time_limit=600,
    time_limit=660,
)
def publish_epoch_manifests(self) -> int:
    """Publish the manifests of settled epochs that have none yet (rewards.manifests); a request
    for one publishes it too, so a lost run only makes that request slower."""
    from rewards import manifests

    try:
        return manifests.publish_missing()
    except OperationalError as exc:
        raise self.retry(exc=exc, countdown=min(2**self.request.retries * 5, 60)) from None


@shared_task(
    name="rewards.watch_claims",
    bind=True,
    ignore_result=True,
    acks_late=True,
    max_retries=3,
    soft_time_limit=120,
    time_limit=150,
)
def watch_claims(self) -> int:
    """Apply confirmed Claimed events since the last run (rewards.watcher); safe to overlap."""
    from rewards import watcher

    try:
        result = watcher.watch()
    except watcher.DeepReorg:
        log.exception("claim watcher stopped: the chain reorganised past the confirmations")
        raise
    except (OperationalError, ConnectionError, TimeoutError) as exc:
        raise self.retry(exc=exc, countdown=min(2**self.request.retries * 5, 60)) from None
    return 0 if result is None else result.events


@shared_task(
    name="rewards.record_token_prices",
    bind=True,
    ignore_result=True,
    acks_late=True,
    max_retries=3,
    soft_time_limit=120,
    time_limit=150,
)
def record_token_prices(self) -> int:
    """Record the price feed's new rounds into the price table (rewards.prices); a no-op
    without PRICE_FEED_ADDRESS and WEB3_PROVIDER_URI. Safe to overlap."""
    from rewards import prices

    try:
        result = prices.record_feed_quotes()
    except (OperationalError, ConnectionError, TimeoutError) as exc:
        raise self.retry(exc=exc, countdown=min(2**self.request.retries * 5, 60)) from None
    return 0 if result is None else result.recorded
