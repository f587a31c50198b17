"""The worker side of telemetry: `contributors.telemetry.store`, `dispatch` and their Celery
tasks, sweeper included.

Batches are created through the HTTP API. Tests that need other connections (threads, a real
worker process) use `transactional_db`; there the API's on-commit enqueue really reaches the
broker, so it is routed to a queue of the test's own: a real worker's, or a parking queue that
the test counts and purges.
"""

import re
import threading
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from contributors import tasks
from contributors.models import GPU, Sample, TelemetryBatch
from contributors.telemetry import dispatch
from contributors.telemetry import store as ingest
from portal.celery_app import app as celery_app
from portal.lib import hotcache
from tests.support.ingest import GPU_UUID, Agent, accepted, age, batch
from tests.support.processes import WorkerProcess, wait_for

pytestmark = pytest.mark.django_db

# --- ingest in-process -----------------------------------------------------------------------


def test_ingest_stores_the_batch_and_twice_changes_nothing(django_capture_on_commit_callbacks):
    agent = Agent()
    body = batch(25)
    row = accepted(agent, body, django_capture_on_commit_callbacks)

    assert ingest.ingest(row.pk) == 25
    row.refresh_from_db()
    first = (row.status, row.processed_at, row.attempts, row.sample_count)
    assert first[0] == TelemetryBatch.Status.PROCESSED and first[2:] == (1, 25)

    assert ingest.ingest(row.pk) == 0
    row.refresh_from_db()
    assert (row.status, row.processed_at, row.attempts, row.sample_count) == first
    assert Sample.objects.count() == 25
    # The answer a replay gets is kept after the samples moved to their own table.
    replay = agent.send(body)
    assert (replay.status_code, replay.json()["accepted"]) == (200, 25)


def test_ingest_of_an_unknown_batch_does_nothing():
    assert ingest.ingest(987654321) == 0


def test_ingest_task_run_in_process_returns_the_sample_count(django_capture_on_commit_callbacks):
    row = accepted(Agent(), batch(3), django_capture_on_commit_callbacks)

    assert tasks.ingest_batch.apply(args=[row.pk]).get() == 3
    assert tasks.ingest_batch.apply(args=[row.pk]).get() == 0
    assert Sample.objects.count() == 3


def test_a_batch_failing_too_often_waits_for_an_admin(settings, django_capture_on_commit_callbacks):
    settings.INGEST_MAX_ATTEMPTS = 2
    row = accepted(Agent(), batch(2), django_capture_on_commit_callbacks)
    age(row, 3600)

    ingest.record_failure(row.pk, "OperationalError: disk I/O error")
    row.refresh_from_db()
    assert (row.status, row.attempts) == (TelemetryBatch.Status.PENDING, 1)
    assert ingest.stale_batch_ids() == [row.pk]

    ingest.record_failure(row.pk, "OperationalError: disk I/O error")
    row.refresh_from_db()
    assert (row.status, row.attempts, row.error) == (
        TelemetryBatch.Status.FAILED,
        2,
        "OperationalError: disk I/O error",
    )
    assert ingest.stale_batch_ids() == []
    assert ingest.ingest(row.pk) == 0 and not Sample.objects.exists()


# --- the sweeper's choice ---------------------------------------------------------------------


def test_only_batches_pending_past_the_sweep_delay_are_stale(
    settings, django_capture_on_commit_callbacks
):
    settings.INGEST_SWEEP_AFTER_S = 120
    agent = Agent()
    start = timezone.now() - timedelta(hours=1)
    fresh, old, older, done = (
        accepted(agent, batch(1, start + timedelta(minutes=i)), django_capture_on_commit_callbacks)
        for i in range(4)
    )
    age(fresh, 60)
    age(old, 180)
    age(older, 600)
    age(done, 600)
    ingest.ingest(done.pk)

    assert ingest.stale_batch_ids() == [older.pk, old.pk]  # oldest first
    assert ingest.stale_batch_ids(limit=1) == [older.pk]

    settings.INGEST_SWEEP_AFTER_S = 30
    assert ingest.stale_batch_ids() == [older.pk, old.pk, fresh.pk]


def test_sweeper_asks_for_drains_once_a_batch_waits_too_long(
    django_capture_on_commit_callbacks, settings
):
    agent = Agent()
    # Accepted, but the request's own drain request never ran (a lost message, say).
    fresh = accepted(
        agent, batch(2, timezone.now() - timedelta(minutes=2)), django_capture_on_commit_callbacks
    )
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True  # the drains run here, in this test
    try:
        assert tasks.sweep_pending_batches() == 0  # nothing waited INGEST_SWEEP_AFTER_S yet
        stale = accepted(agent, batch(4), django_capture_on_commit_callbacks)
        age(stale, 3600)
        # A drain of slot 0 holds its lease: that slot is not asked again.
        hotcache.add_flag(dispatch.DRAIN_FLAG.format(slot=0), 60)
        sent = tasks.sweep_pending_batches()
    finally:
        celery_app.conf.task_always_eager = previous

    assert sent == settings.INGEST_DRAINS - 1
    stale.refresh_from_db()
    fresh.refresh_from_db()
    # A drain stores everything pending, not only what the sweeper saw waiting.
    assert (stale.status, fresh.status) == ("processed", "processed")
    assert Sample.objects.count() == 6


# --- concurrency ------------------------------------------------------------------------------


def run_in_threads(count: int, work):
    """Run `work(i)` in `count` threads that start together; returns their results."""
    barrier = threading.Barrier(count)
    results = [None] * count
    errors = []

    def target(i):
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


def test_concurrent_ingests_store_each_sample_once(transactional_db, parking_queue):
    agent = Agent()
    response = agent.send(batch(40))
    assert response.status_code == 202
    row = TelemetryBatch.objects.get()
    assert parking_queue() == 1  # the API enqueued it once

    results = run_in_threads(4, lambda _i: ingest.ingest(row.pk))

    assert sorted(results) == [0, 0, 0, 40]
    assert Sample.objects.count() == 40
    row.refresh_from_db()
    assert (row.status, row.attempts) == (TelemetryBatch.Status.PROCESSED, 1)


def test_racing_copies_of_one_batch_are_stored_and_enqueued_once(transactional_db, parking_queue):
    agent = Agent()
    body = batch(5)

    responses = run_in_threads(4, lambda _i: agent.send(body))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 200, 202]
    assert all(r.json() == responses[0].json() for r in responses)
    assert responses[0].json()["accepted"] == 5
    assert TelemetryBatch.objects.count() == 1
    assert parking_queue() == 1


# --- a real worker process --------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_worker(django_db_setup, tmp_path_factory):
    """One real worker for this module; its own enqueues (the sweeper's) go to its own queue."""
    queue = f"test-{uuid.uuid4().hex[:12]}"
    process = WorkerProcess(
        queue,
        tmp_path_factory.mktemp("ingest-worker") / "worker.log",
        extra_env={"CELERY_TASK_DEFAULT_QUEUE": queue},
    ).start()
    yield process
    process.stop()


@pytest.mark.processes
def test_a_real_worker_ingests_what_the_api_enqueued(transactional_db, own_worker):
    agent = Agent()
    previous = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = own_worker.queue
    try:
        response = agent.send(batch(12))
    finally:
        celery_app.conf.task_default_queue = previous
    assert response.status_code == 202
    row = TelemetryBatch.objects.get()

    def processed():
        row.refresh_from_db()
        return row.status == TelemetryBatch.Status.PROCESSED

    wait_for(processed, timeout=90, message=f"never ingested:\n{own_worker.output()}")
    assert Sample.objects.filter(gpu__uuid=GPU_UUID).count() == 12
    assert GPU.objects.get(uuid=GPU_UUID).last_sample_at is not None
    # The drain ends once it has looked again and found nothing (it would take any batch
    # accepted meanwhile, the next test's included).
    wait_for(
        lambda: re.search(r"drain_batches\[[^]]+\] succeeded", own_worker.output()),
        timeout=30,
        message=own_worker.output(),
    )
    assert own_worker.proc.poll() is None


@pytest.mark.processes
def test_a_real_worker_sweeps_a_batch_whose_task_was_lost(
    transactional_db, own_worker, parking_queue
):
    agent = Agent()
    lost, fresh = agent.send(batch(6)), agent.send(batch(3, timezone.now() - timedelta(minutes=1)))
    assert (lost.status_code, fresh.status_code) == (202, 202)
    # One drain message for both (the second request found its slot's drain already asked
    # for), and it is "lost": nobody will ever run it.
    assert parking_queue() == 1
    lost_row = TelemetryBatch.objects.get(batch_id=lost.json()["batch_id"])
    fresh_row = TelemetryBatch.objects.get(batch_id=fresh.json()["batch_id"])
    age(lost_row, 3600)
    # What DRAIN_FLAG_TTL_S does to the lease of a drain nobody runs: it lapses.
    for slot in range(settings.INGEST_DRAINS):
        cache.delete(dispatch.DRAIN_FLAG.format(slot=slot))

    tasks.sweep_pending_batches.apply_async(queue=own_worker.queue)

    def processed():
        lost_row.refresh_from_db()
        return lost_row.status == TelemetryBatch.Status.PROCESSED

    wait_for(processed, timeout=90, message=f"never swept:\n{own_worker.output()}")
    # The sweeper asked for a drain of every slot (its return value, in the worker's log).
    swept = wait_for(
        lambda: re.search(
            r"sweep_pending_batches\[[^]]+\] succeeded in [^:]+: (\d+)", own_worker.output()
        ),
        timeout=30,
        message=own_worker.output(),
    )
    assert swept.group(1) == str(settings.INGEST_DRAINS)
    # The drain took the batch that was not waiting long yet, too.
    wait_for(lambda: Sample.objects.count() == 9, timeout=30, message=own_worker.output())
    fresh_row.refresh_from_db()
    assert fresh_row.status == TelemetryBatch.Status.PROCESSED
