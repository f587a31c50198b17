"""A task enqueued through the configured broker runs in a separate worker process.

This runs on the embedded filesystem broker by default and on Redis when CELERY_BROKER_URL
points there (as .ci/run's second pass does).
"""

import os
import uuid

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import Client

from contributors.models import Contributor
from portal import tasks
from tests.support.processes import wait_for

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


def test_enqueued_task_runs_in_a_real_worker(worker):
    token = uuid.uuid4().hex
    tasks.ping.apply_async(args=[token], queue=worker.queue)

    def seen():
        return cache.get(tasks.PING_KEY.format(token=token))

    result = wait_for(
        seen, timeout=90, message=f"the worker never ran the task:\n{worker.output()}"
    )
    assert result["token"] == token
    # Not run eagerly in this process: the worker's own process did it.
    assert result["pid"] != os.getpid()
    assert worker.proc.poll() is None, "the worker exited"


def test_healthz_reports_a_fresh_worker_heartbeat_to_staff(worker):
    staff = Client()  # the heartbeat is a detail: only staff see it
    staff.force_login(Contributor.objects.create(username="ops", is_staff=True))
    cache.delete(tasks.HEARTBEAT_KEY)
    assert staff.get("/healthz").json()["worker"]["fresh"] is False

    tasks.heartbeat.apply_async(queue=worker.queue)
    wait_for(lambda: cache.get(tasks.HEARTBEAT_KEY), timeout=90, message=worker.output())

    body = staff.get("/healthz").json()
    assert body["worker"]["fresh"] is True
    assert 0 <= body["worker"]["last_heartbeat_age_s"] < 3 * settings.WORKER_HEARTBEAT_S
