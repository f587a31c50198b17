"""Tasks of the site itself: proving that a worker is alive and reachable through the broker."""

import os

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

HEARTBEAT_KEY = "portal:worker-heartbeat"
PING_KEY = "portal:ping:{token}"


@shared_task(name="portal.heartbeat", ignore_result=True)
def heartbeat() -> None:
    """Record when a worker last ran a task; /healthz reports its age."""
    cache.set(HEARTBEAT_KEY, timezone.now().isoformat(), timeout=None)


@shared_task(name="portal.ping", ignore_result=True, expires=600)
def ping(token: str) -> None:
    """Echo `token` and the running process id into the shared cache, for whoever sent it."""
    cache.set(PING_KEY.format(token=token), {"token": token, "pid": os.getpid()}, timeout=600)
