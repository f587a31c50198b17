"""Faults injected into real processes: telemetry survives a killed worker, a lost broker queue
and a broker that is down (tests/test_resilience_agent.py: a web process killed under a running
agent).

The promise under test (DESIGN.md "Agent API (v1)", contributors/telemetry/store.py): a batch
answered 202 is durable in the database, and every one of its samples ends up stored exactly
once, whatever dies in between, because ingestion is idempotent and the sweeper asks for drains
when batches are left pending. The tests run real processes (Celery workers, a
redis-server, gunicorn) against the test database, on both CI configurations.

The processes come from tests/support/processes.py, brokers of the tests' own from
tests/support/brokers.py; tests/test_faults.py measures how long storing stops when a worker or
Redis dies.
"""

import logging
import shutil
import time
import uuid
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from contributors import tasks as tasks_module
from contributors.api import agent as agent_api
from contributors.models import GPU, TelemetryBatch
from contributors.tasks import ingest_batch, sweep_pending_batches
from contributors.telemetry import store as ingest
from portal import tasks as portal_tasks
from portal.celery_app import app as celery_app
from tests.support.brokers import (
    FilesystemBroker,
    RedisServer,
    forget_drain_flags,
    producer_using,
    purge_queues,
    unique_queue,
)
from tests.support.posting import (
    PENDING,
    PROCESSED,
    TELEMETRY,
    EnrolledNode,
    assert_every_sample_stored_once,
    backdate_pending,
    post_overlapping_batches,
)
from tests.support.processes import (
    WEB_WORKERS,
    WebProcess,
    free_port,
    http_post,
    portal_env,
    sigkill_tree,
    start_worker,
    wait_until,
)

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def slow_sweeper(settings):
    # Tests that tell fresh batches from the sweeper's (in this process) need longer than the
    # default few seconds between the two.
    settings.INGEST_SWEEP_AFTER_S = 60


@pytest.fixture
def generous_rate_limit(settings):
    # These tests post batches faster than an agent would.
    settings.TELEMETRY_RATE_PER_MIN = 100_000


@pytest.fixture(params=["redis", "filesystem"])
def own_broker(request, tmp_path, reaper):
    if request.param == "redis":
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed: the broker-restart test needs one")
        broker = RedisServer(tmp_path / "redis")
    else:
        broker = FilesystemBroker(tmp_path / "broker")
    broker.start()
    reaper.add(broker.stop)
    return broker


@pytest.fixture(autouse=True)
def _no_enqueue_backoff_left_over(monkeypatch):
    """`request_drain` may stop trying for a while after a broker failure (a process-wide
    backoff) and remembers seeing a drain's flag for a moment: start each test without
    either, and leave neither behind for other tests."""
    monkeypatch.setattr(tasks_module, "_broker_down_until", 0.0, raising=False)
    monkeypatch.setattr(tasks_module, "_flag_seen_at", {}, raising=False)


# --- 1. a worker SIGKILLed half-way ----------------------------------------------------------


def configured_queue_size(queue: str) -> int:
    """Messages waiting in `queue` on the configured broker (not counting unacked ones)."""
    with celery_app.connection_for_write() as conn:
        return conn.default_channel.queue_declare(queue=queue, passive=True).message_count


@contextmanager
def holding_batch(pk: int):
    """Keep a worker's `ingest(pk)` from committing, half-way through: on PostgreSQL a lock on
    the batch's GPU rows, which the worker takes after claiming the batch (a lock on the batch
    itself would only make the worker skip it); on SQLite the database's write lock (its
    transactions here begin IMMEDIATE)."""
    node_id = TelemetryBatch.objects.values_list("node_id", flat=True).get(pk=pk)
    with transaction.atomic():
        list(GPU.objects.select_for_update().filter(node_id=node_id))
        yield


def backends_waiting_on_a_lock() -> int | None:
    """PostgreSQL sessions of the test database blocked on a lock; None on SQLite (unseen)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def test_sigkilled_worker_loses_nothing_and_counts_nothing_twice(
    tmp_path, reaper, generous_rate_limit, slow_sweeper
):
    node = EnrolledNode.enroll(gpus=2)
    first_queue, second_queue = unique_queue("killed"), unique_queue("fresh")
    parked = unique_queue("parked")
    reaper.add(purge_queues, parked, first_queue, second_queue)

    # The API's own enqueues go to a queue nobody reads: which batches reach a worker, and
    # when, is this test's to decide.
    with producer_using(default_queue=parked):
        bodies = post_overlapping_batches(node, count=40, per_batch=40, overlap=5)
    sent_samples = sum(len(b["samples"]) for b in bodies)
    assert len(node.sent) < sent_samples  # the overlaps are duplicates the portal must drop
    batch_pks = sorted(node.batches().values_list("pk", flat=True))
    assert len(batch_pks) == 40
    assert node.batches().filter(status=PENDING).count() == 40

    first = start_worker(reaper, first_queue, tmp_path / "worker-killed.log")
    done_first, in_flight, rest = batch_pks[:5], batch_pks[5], batch_pks[6:]
    for pk in done_first:
        ingest_batch.apply_async(args=[pk], queue=first_queue)
    wait_until(
        lambda: node.batches().filter(pk__in=done_first, status=PROCESSED).count() == 5,
        60,
        "the first worker did not process the first batches",
        first.log_path,
    )

    # The next batch is handed to the worker but cannot commit; the rest queue up behind it
    # (one task at a time: concurrency 1, prefetch 1). SIGKILL the worker right there.
    with holding_batch(in_flight):
        task = ingest_batch.apply_async(args=[in_flight], queue=first_queue)
        wait_until(
            lambda: f"ingest_batch[{task.id}] received" in first.output(),
            30,
            "the worker never took the in-flight batch",
            first.log_path,
        )
        if backends_waiting_on_a_lock() is not None:
            wait_until(
                lambda: backends_waiting_on_a_lock() >= 1,
                30,
                "the worker never blocked inside ingest",
                first.log_path,
            )
        for pk in rest:
            ingest_batch.apply_async(args=[pk], queue=first_queue)
        sigkill_tree(first.proc)

    pending = sorted(node.batches().filter(status=PENDING).values_list("pk", flat=True))
    assert pending == [in_flight, *rest]
    assert node.batches().filter(status=PROCESSED).count() == 5
    # The killed worker took the in-flight message with it: no worker reading that queue
    # would ever get it again (Redis keeps it unacked for an hour), only the sweeper can.
    assert configured_queue_size(first_queue) < len(pending)
    # Fresh batches are not the sweeper's yet; once left past INGEST_SWEEP_AFTER_S they are.
    assert not set(ingest.stale_batch_ids()) & set(pending)
    assert backdate_pending(node) == pending
    stale = ingest.stale_batch_ids()
    assert sorted(stale) == pending

    second = start_worker(reaper, second_queue, tmp_path / "worker-fresh.log")
    for pk in stale:
        ingest_batch.apply_async(args=[pk], queue=second_queue)
    wait_until(
        lambda: not node.batches().filter(status=PENDING).exists(),
        60,
        "batches still pending after the sweep",
        second.log_path,
    )

    assert_every_sample_stored_once(node)
    # Each batch was stored by exactly one successful run; the killed one committed nothing.
    assert set(node.batches().values_list("attempts", flat=True)) == {1}


# --- 2. the broker loses its queue (and is down for a while) ---------------------------------


@pytest.fixture
def enqueued(monkeypatch) -> list[bool]:
    """What each drain request of the telemetry API returned (True: a drain will look for the
    batch, False: the broker is down and the sweeper will)."""
    results: list[bool] = []
    real_request = agent_api.request_drain

    def spy(node_pk: int) -> bool:
        results.append(real_request(node_pk))
        return results[-1]

    monkeypatch.setattr(agent_api, "request_drain", spy)
    return results


def test_broker_down_then_back_empty_loses_no_batch(
    tmp_path, reaper, own_broker, generous_rate_limit, slow_sweeper, enqueued, caplog
):
    broker = own_broker
    queue = unique_queue(f"{broker.kind}-restart")
    node = EnrolledNode.enroll(gpus=2)

    with producer_using(default_queue=queue, broker=broker):
        post_overlapping_batches(node, count=10, per_batch=30, overlap=3)
        # Ten accepted batches (the replay is answered, not enqueued again), one drain message:
        # the other nine found its flag set.
        assert enqueued == [True] * 10
        assert broker.queue_size(queue) == 1

        broker.crash()
        forget_drain_flags()
        caplog.clear()
        start = timezone.now() - timedelta(minutes=10)
        while_down = []
        for k in range(2):
            body = node.batch([start + timedelta(seconds=k * 30 + i) for i in range(30)])
            response = node.post(body)
            assert response.status_code == 202, response.content
            assert response.json()["accepted"] == len(body["samples"])
            while_down.append(body["batch_id"])
        assert enqueued[10:] == [False, False]
        warnings = [
            r
            for r in caplog.records
            if r.name == "contributors.tasks" and r.levelno >= logging.WARNING
        ]
        assert 1 <= len(warnings) <= 2, [r.getMessage() for r in warnings]
        # Answered 202 because the batch is durable: here, pending, with its samples.
        for row in node.batches().filter(batch_id__in=while_down):
            assert (row.status, len(row.samples)) == (PENDING, 60)

        broker.restart()
        assert broker.queue_size(queue) == 0, "the broker came back with its queue"
        worker = start_worker(
            reaper, queue, tmp_path / f"worker-{broker.kind}.log", broker.worker_env
        )
        assert node.batches().filter(status=PENDING).count() == 12
        assert not ingest.stale_batch_ids(), "fresh batches are not the sweeper's yet"
        assert len(backdate_pending(node)) == 12
        # The sweeper, as beat runs it: a drain of every slot, on the new broker, and they
        # store every pending batch (not one message per batch).
        assert sweep_pending_batches() == settings.INGEST_DRAINS
        assert broker.queue_size(queue) <= settings.INGEST_DRAINS
        wait_until(
            lambda: not node.batches().filter(status=PENDING).exists(),
            60,
            "batches still pending after the sweep",
            worker.log_path,
        )
    assert_every_sample_stored_once(node)


def test_telemetry_answers_promptly_while_the_broker_is_down(tmp_path, reaper):
    """A broker that is down must not hold every telemetry request (and the web worker serving
    it) for seconds: the batch is already durable, the enqueue is best effort. Measured on a
    real web process configured for a Redis broker, as production runs it: each web worker may
    pay for finding the broker gone once, briefly; the requests after that answer at once."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: this test needs a broker it can stop")
    broker = RedisServer(tmp_path / "redis")
    broker.start()
    reaper.add(broker.stop)
    queue = unique_queue("down")
    web = WebProcess(free_port(), tmp_path / "web.log", portal_env(queue, **broker.worker_env))
    web.start()
    reaper.add(web.kill)
    node = EnrolledNode.enroll(gpus=1)
    url = f"{web.url}{TELEMETRY}"
    base = timezone.now() - timedelta(minutes=30)

    status, _ = http_post(url, node.batch([base]), node.token)
    assert status == 202
    wait_until(lambda: broker.queue_size(queue) == 1, 10, "the web process never enqueued")

    broker.crash()
    forget_drain_flags()
    durations = []
    for k in range(1, 9):
        status, seconds = http_post(url, node.batch([base + timedelta(seconds=k)]), node.token)
        assert status == 202
        durations.append(round(seconds, 2))
    # Accepted and durable, waiting for the sweeper.
    assert node.batches().filter(status=PENDING).count() == 9
    assert "WARNING contributors.tasks:" in web.log_path.read_text(errors="replace")
    slow = [d for d in durations if d > 0.5]
    assert len(slow) <= WEB_WORKERS and max(durations) < 3.0, (
        f"telemetry requests took {durations} s while the broker was down"
    )


def test_filesystem_worker_survives_a_message_caught_mid_write(tmp_path, reaper):
    """kombu's filesystem transport creates a message file, then locks and writes it; a worker
    polling in between finds the file with nothing in it yet. That must cost at most that one
    message (which the sweeper covers), never the worker: under `make run` (honcho) one
    process exiting stops the whole portal."""
    broker = FilesystemBroker(tmp_path / "broker")
    broker.start()
    queue = unique_queue("fs-midwrite")
    worker = start_worker(reaper, queue, tmp_path / "worker.log", broker.worker_env)
    wait_until(
        lambda: " ready." in worker.output(), 60, "the worker never started", worker.log_path
    )

    # What a worker's poll sees between the producer's open() and its write().
    name = f"{round(time.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
    (broker.queue_dir / name).touch()
    token = uuid.uuid4().hex
    with producer_using(default_queue=queue, broker=broker):
        portal_tasks.ping.apply_async(args=[token], queue=queue)

    def ran():
        if worker.proc.poll() is not None:
            log = worker.output()
            crash = log[log.find(" CRITICAL ") :][:200] if " CRITICAL " in log else ""
            pytest.fail(f"the worker exited: {crash}\n...\n{log[-400:]}")
        return cache.get(portal_tasks.PING_KEY.format(token=token))

    wait_until(ran, 30, "the worker never ran the task sent after the half-written message")
