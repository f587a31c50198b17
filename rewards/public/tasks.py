"""The beat task that computes the public figures (portal/schedule.py: every
PUBLIC_STATS_EVERY_S seconds)."""

from celery import shared_task
from django.db import OperationalError

from rewards.public import store


@shared_task(
    name="rewards.compute_public_stats",
    bind=True,
    ignore_result=True,
    acks_late=True,
    max_retries=2,
    soft_time_limit=120,
    time_limit=150,
)
def compute_public_stats(self) -> None:
    """Compute /network/ and /leaderboard/ and store them for the requests to read; running it
    twice, or on two workers at once, only stores the same figures twice."""
    try:
        store.compute_all()
    except OperationalError as exc:  # a locked or restarting database: try again soon
        raise self.retry(exc=exc, countdown=min(2**self.request.retries * 5, 30)) from None
