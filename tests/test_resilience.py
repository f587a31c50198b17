"""Faults injected into real processes: telemetry survives a killed worker, a lost broker queue,
a broker that is down, and a web process killed under a running agent.

The promise under test (DESIGN.md "Agent API (v1)", contributors/ingest.py): a batch answered
202 is durable in the database, and every one of its samples ends up stored exactly once,
whatever dies in between, because ingestion is idempotent and the sweeper re-enqueues
batches left pending. The tests run real processes (Celery workers and beat, a redis-server,
gunicorn, the node agent) against the test database, on both CI configurations.

Brokers of their own: the tests that lose or stop a broker start a private redis-server, or a
private filesystem-broker folder, and point both the workers (environment) and this process's
Celery app (`producer_using`, with the transport options portal/settings.py derives for that
broker) at it, so nothing is done to the machine's shared Redis or to `var/broker`. Tests on the
configured broker send to queues no other process reads and purge them afterwards.

The end-to-end test needs the set of samples the agent produced, but the spool deletes what the
portal accepted; it runs the agent's own `main()` with a tap that appends every sample handed to
`Spool.add` to a file, and reads the spool's SQLite tables for what is left.
"""

import json
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import kombu.pools
import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import F
from django.test import Client
from django.utils import timezone

from contributors import ingest
from contributors import tasks as tasks_module
from contributors.api import agent as agent_api
from contributors.models import GPU, Contributor, EnrollmentCode, Node, Sample, TelemetryBatch
from contributors.tasks import ingest_batch, sweep_pending_batches
from portal import tasks as portal_tasks
from portal.celery_app import app as celery_app
from tests.conftest import BASE_DIR, WorkerProcess, database_url_for_test_db

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

ENROLL = "/api/v1/agent/enroll"
TELEMETRY = "/api/v1/agent/telemetry"
PENDING = TelemetryBatch.Status.PENDING
PROCESSED = TelemetryBatch.Status.PROCESSED
WEB_WORKERS = 2  # gunicorn worker processes of a WebProcess


# --- processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (from /proc), so a kill can take a whole tree at once."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def sigkill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a process and all its descendants at once, as an OOM killer or a power cut
    would: a Celery worker's pool children die with it instead of finishing their task."""
    if proc.poll() is not None:
        return
    for pid in [proc.pid, *descendants(proc.pid)]:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=10)


def tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return f"(no log at {path})"


def wait_until(predicate, timeout: float, what: str, *logs: Path, interval: float = 0.1):
    """Like conftest's `wait_for`, failing with the tails of `logs` as they are at the deadline
    (not as they were when the wait began)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    shown = "\n".join(f"--- {log.name}:\n{tail(log)}" for log in logs)
    pytest.fail(f"{what} (waited {timeout} s)\n{shown}")


class Reaper:
    """Cleanups run in reverse order at teardown, every one of them, even after a failure."""

    def __init__(self):
        self._cleanups = []

    def add(self, cleanup, *args):
        self._cleanups.append((cleanup, args))

    def run(self):
        errors = []
        while self._cleanups:
            cleanup, args = self._cleanups.pop()
            try:
                cleanup(*args)
            except Exception as exc:  # noqa: BLE001 - report after every cleanup ran
                errors.append(f"{getattr(cleanup, '__name__', cleanup)}: {exc!r}")
        if errors:
            raise RuntimeError("cleanup failed: " + "; ".join(errors))


@pytest.fixture
def reaper():
    reaper = Reaper()
    try:
        yield reaper
    finally:
        reaper.run()


def start_worker(reaper: Reaper, queue: str, log: Path, extra_env: dict | None = None):
    worker = WorkerProcess(queue, log, extra_env).start()
    reaper.add(worker.stop)
    return worker


# --- brokers of our own ----------------------------------------------------------------------


def app_transport_options(broker_env: dict) -> dict:
    """CELERY_BROKER_TRANSPORT_OPTIONS as portal/settings.py derives them for a broker given
    by environment variables: what a web process or worker started with `broker_env` uses."""
    code = "import json, portal.settings as s; print(json.dumps(s.CELERY_BROKER_TRANSPORT_OPTIONS))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR, env={**os.environ, "DEBUG": "true", **broker_env},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


class RedisBroker:
    """A private `redis-server` with nothing persisted, so a kill loses every queue in it."""

    kind = "redis"

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.worker_env = {"CELERY_BROKER_URL": self.url}
        self.proc: subprocess.Popen | None = None

    def client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
            ],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()

        def answers():
            if self.proc.poll() is not None:
                pytest.fail(f"redis-server exited:\n{tail(self.workdir / 'redis.log')}")
            try:
                return self.client().ping()
            except Exception:  # noqa: BLE001 - not up yet
                return False

        wait_until(answers, 20, "redis-server never answered PING", self.workdir / "redis.log")

    def crash(self) -> None:
        """kill -9: the queues, kept only in memory, are gone."""
        sigkill_tree(self.proc)

    def restart(self) -> None:
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            sigkill_tree(self.proc)

    def queue_size(self, queue: str) -> int:
        return self.client().llen(queue)


class FilesystemBroker:
    """kombu's filesystem transport in a folder of our own (the embedded default's broker).

    It has no server to crash: losing the queue is deleting its message files, and being down
    is its queue folder missing, so that nothing can be written.
    """

    kind = "filesystem"

    def __init__(self, workdir: Path):
        self.queue_dir = workdir / "queue"
        self.control_dir = workdir / "control"
        self.url = "filesystem://"
        self.worker_env = {"CELERY_BROKER_URL": self.url, "CELERY_BROKER_DIR": str(workdir)}

    def start(self) -> None:
        self.queue_dir.mkdir(parents=True, exist_ok=True)
        self.control_dir.mkdir(parents=True, exist_ok=True)

    def crash(self) -> None:
        for message in self.queue_dir.iterdir():
            message.unlink()
        shutil.rmtree(self.queue_dir)

    def restart(self) -> None:
        self.start()

    def stop(self) -> None:
        pass

    def queue_size(self, queue: str) -> int:
        return sum(1 for p in self.queue_dir.iterdir() if p.name.endswith(f".{queue}.msg"))


@pytest.fixture(params=["redis", "filesystem"])
def own_broker(request, tmp_path, reaper):
    if request.param == "redis":
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed: the broker-restart test needs one")
        broker = RedisBroker(tmp_path / "redis")
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


def forget_drain_flags() -> None:
    """What happens DRAIN_FLAG_TTL_S after a broker lost its queue: the flags that said "a
    drain is coming" for the lost messages expire, and the next batch asks again."""
    for slot in range(settings.INGEST_DRAINS):
        cache.delete(tasks_module.DRAIN_FLAG.format(slot=slot))
    tasks_module._flag_seen_at.clear()
    # Web processes remember seeing a flag for half a grace; let that pass too.
    time.sleep(tasks_module.DRAIN_GRACE_S)


def _reset_producer_pools() -> None:
    """Forget every pooled broker connection of this process, so the next send reconnects with
    the current configuration (Celery caches the pools on first use)."""
    kombu.pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@contextmanager
def producer_using(default_queue: str, broker=None):
    """Point this process's Celery app (what the API publishes through) at `broker`, if
    given, and its default queue at `default_queue`; restore both afterwards."""
    conf = celery_app.conf
    keys = ("broker_write_url", "broker_read_url", "broker_transport_options")
    saved = {key: conf.get(key) for key in (*keys, "task_default_queue")}
    _reset_producer_pools()
    if broker is not None:
        # broker_write_url wins over broker_url and over the CELERY_BROKER_URL variable.
        conf.broker_write_url = broker.url
        conf.broker_read_url = broker.url
        conf.broker_transport_options = app_transport_options(broker.worker_env)
    conf.task_default_queue = default_queue
    try:
        yield
    finally:
        _reset_producer_pools()
        conf.update(saved)


def purge_queues(*queues: str) -> None:
    """Drop what tests left in queues of their own on the configured broker."""
    with celery_app.connection_for_write() as conn:
        for queue in queues:
            with suppress(Exception):
                conn.default_channel.queue_purge(queue)
            with suppress(Exception):
                conn.default_channel.queue_delete(queue)


def unique_queue(role: str) -> str:
    return f"test-{role}-{uuid.uuid4().hex[:10]}"


# --- the portal as a real web process ---------------------------------------------------------


class WebProcess:
    """The portal under gunicorn (as the Procfile runs it) on a fixed port, in its own process
    group so that a kill takes the master and its workers at once."""

    def __init__(self, port: int, log_path: Path, env: dict):
        self.port = port
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "WebProcess":
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "portal.wsgi",
                "--bind", f"127.0.0.1:{self.port}", "--workers", str(WEB_WORKERS),
                "--timeout", "30", "--access-logfile", "-",
            ],
            cwd=BASE_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        wait_until(self._answers, 30, "the web process never answered", self.log_path)
        return self

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(self._died())
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                return sock.recv(16).startswith(b"HTTP/1.")
        except OSError:
            return False

    def _died(self) -> str:
        return f"the web process did not come up:\n{tail(self.log_path)}"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def portal_env(queue: str, **extra: str) -> dict:
    """The environment of a web process, worker or beat of these tests: the test database,
    and `queue` as the default queue, so that what they enqueue stays among themselves."""
    return {
        **os.environ,
        "DEBUG": "true",
        "DATABASE_URL": database_url_for_test_db(),
        "PYTHONUNBUFFERED": "1",
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "TELEMETRY_RATE_PER_MIN": "100000",
        **extra,
    }


def http_post(url: str, body: dict, token: str) -> tuple[int, float]:
    """POST JSON to a real web process; (status, seconds it took)."""
    request = urllib.request.Request(  # noqa: S310 - always http://127.0.0.1
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - http://127.0.0.1
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status, time.monotonic() - started


# --- telemetry through the real HTTP API -----------------------------------------------------


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class EnrolledNode:
    """A node enrolled through POST /api/v1/agent/enroll, posting with its real token."""

    node_id: int
    token: str
    gpu_uuids: list[str]
    client: Client = field(default_factory=Client)
    sent: set = field(default_factory=set)  # (gpu uuid, ts) of every accepted sample

    @classmethod
    def enroll(cls, gpus: int = 2) -> "EnrolledNode":
        owner = Contributor.objects.create(username=f"resilience-{uuid.uuid4().hex[:12]}")
        _, code = EnrollmentCode.issue(owner)
        uuids = [f"GPU-{uuid.uuid4()}" for _ in range(gpus)]
        response = Client().post(
            ENROLL,
            {
                "enrollment_code": code,
                "hostname": "rig-resilience",
                "agent_version": "test",
                "gpus": [
                    {"uuid": u, "name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559}
                    for u in uuids
                ],
            },
            content_type="application/json",
        )
        assert response.status_code == 201, response.content
        body = response.json()
        return cls(body["node_id"], body["node_token"], uuids)

    @staticmethod
    def samples(gpu_uuid: str, times: list[datetime]) -> list[dict]:
        return [
            {
                "gpu_uuid": gpu_uuid,
                "ts": iso(ts),
                "utilization_gpu_pct": 50 + i % 50,
                "memory_used_mib": 1000 + i,
                "memory_total_mib": 81559,
                "temperature_c": 60.0,
                "power_w": 300.5,
            }
            for i, ts in enumerate(times)
        ]

    def post(self, body: dict):
        response = self.client.post(
            TELEMETRY,
            json.dumps(body),
            content_type="application/json",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        if response.status_code in (200, 202):
            for item in body["samples"]:
                self.sent.add((item["gpu_uuid"], datetime.fromisoformat(item["ts"])))
        return response

    def batch(self, times: list[datetime], batch_id: str | None = None) -> dict:
        return {
            "batch_id": batch_id or str(uuid.uuid4()),
            "sent_at": iso(timezone.now()),
            "samples": [s for g in self.gpu_uuids for s in self.samples(g, times)],
        }

    def batches(self):
        return TelemetryBatch.objects.filter(node_id=self.node_id)

    def stored(self) -> set:
        return {
            (gpu_uuid, ts.astimezone(UTC))
            for gpu_uuid, ts in Sample.objects.filter(gpu__node_id=self.node_id).values_list(
                "gpu__uuid", "ts"
            )
        }

    def stored_count(self) -> int:
        return Sample.objects.filter(gpu__node_id=self.node_id).count()


def post_overlapping_batches(node: EnrolledNode, count: int, per_batch: int, overlap: int):
    """`count` batches of `per_batch` readings per GPU, each repeating the last `overlap`
    readings of the one before (an agent resending under a new batch id), plus one exact
    replay of a batch id. Returns the bodies posted."""
    start = timezone.now().replace(microsecond=123457) - timedelta(hours=1)
    step = per_batch - overlap
    bodies, answers = [], []
    for k in range(count):
        times = [start + timedelta(seconds=k * step + i) for i in range(per_batch)]
        body = node.batch(times)
        response = node.post(body)
        assert response.status_code == 202, response.content
        assert response.json()["accepted"] == len(body["samples"]), response.content
        bodies.append(body)
        answers.append(response.json())
    replay = node.post(bodies[count // 2])
    assert (replay.status_code, replay.json()) == (200, answers[count // 2])
    return bodies


@pytest.fixture
def generous_rate_limit(settings):
    # The rate-limit counters live in the shared cache, keyed by node pk, and outlive the test
    # database: a rerun within the same minute would otherwise start out throttled.
    settings.TELEMETRY_RATE_PER_MIN = 100_000


def backdate_pending(node: EnrolledNode) -> list[int]:
    """Make the node's pending batches older than the sweep delay, as if left there long."""
    node.batches().filter(status=PENDING).update(
        received_at=F("received_at") - timedelta(seconds=settings.INGEST_SWEEP_AFTER_S + 5)
    )
    return sorted(node.batches().filter(status=PENDING).values_list("pk", flat=True))


def assert_every_sample_stored_once(node: EnrolledNode) -> None:
    assert node.batches().filter(status=PENDING).count() == 0
    assert node.batches().exclude(status=PROCESSED).count() == 0, list(
        node.batches().exclude(status=PROCESSED).values("pk", "status", "error")
    )
    stored = node.stored()
    assert stored == node.sent, (
        f"{len(node.sent - stored)} samples missing, {len(stored - node.sent)} unexpected"
    )
    assert node.stored_count() == len(node.sent)


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
    tmp_path, reaper, generous_rate_limit
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
    tmp_path, reaper, own_broker, generous_rate_limit, enqueued, caplog
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
        # The sweeper, as beat runs it: every stale batch is enqueued again, on the new broker.
        assert sweep_pending_batches() == 12
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
    broker = RedisBroker(tmp_path / "redis")
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


# --- 3. end to end: the web process killed under a running agent -----------------------------


class BeatProcess:
    def __init__(self, workdir: Path, env: dict):
        self.workdir = workdir
        self.env = env
        self.proc: subprocess.Popen | None = None

    def start(self) -> "BeatProcess":
        log = open(self.workdir / "beat.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "portal", "beat", "--loglevel", "INFO",
                "--schedule", str(self.workdir / "beat-schedule"),
                "--pidfile", str(self.workdir / "beat.pid"),
            ],
            cwd=BASE_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                sigkill_tree(self.proc)


# Runs `omnitensor-agent` exactly as its console script does (`cli.main`), with one addition:
# every sample handed to the spool is first appended to a JSON-lines file, so the test knows
# every sample the agent produced (the spool deletes what the portal accepted).
AGENT_TAP = """\
import json, os, sys
from omnitensor_agent import spool
from omnitensor_agent.cli import main

_add = spool.Spool.add

def add(self, samples):
    with open(os.environ["AGENT_SAMPLE_TAP"], "a") as tap:
        for sample in samples:
            tap.write(json.dumps(sample) + "\\n")
    return _add(self, samples)

spool.Spool.add = add
sys.exit(main())
"""


def read_spool(path: Path) -> dict:
    db = sqlite3.connect(path, timeout=30)
    try:
        return {
            "samples": db.execute("SELECT COUNT(*) FROM samples").fetchone()[0],
            "batches": db.execute("SELECT batch_id, attempts FROM batches").fetchall(),
            "counters": dict(db.execute("SELECT name, value FROM counters").fetchall()),
        }
    finally:
        db.close()


def test_agent_delivers_every_sample_once_across_a_killed_web_process(tmp_path, reaper):
    queue = unique_queue("e2e")
    reaper.add(purge_queues, queue)
    port = free_port()
    env = portal_env(
        queue,
        AGENT_SAMPLE_INTERVAL_S="1",
        AGENT_REPORT_INTERVAL_S="2",
        # The sweeper (beat -> worker) re-enqueues a batch left pending for 3 s, every second:
        # a web process killed between its commit and its enqueue leaves exactly that.
        INGEST_SWEEP_EVERY_S="1",
        INGEST_SWEEP_AFTER_S="3",
        WORKER_HEARTBEAT_S="3600",
    )
    web = WebProcess(port, tmp_path / "web.log", env).start()
    reaper.add(web.kill)
    worker = start_worker(reaper, queue, tmp_path / "worker.log", env)
    beat = BeatProcess(tmp_path, env).start()
    reaper.add(beat.stop)

    owner = Contributor.objects.create(username=f"resilience-{uuid.uuid4().hex[:12]}")
    _, code = EnrollmentCode.issue(owner)
    config, spool_path, tap = tmp_path / "config.json", tmp_path / "spool.db", tmp_path / "tap"
    agent_env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        "XDG_STATE_HOME": str(tmp_path / "xdg-state"),
        "AGENT_SAMPLE_TAP": str(tap),
        "PYTHONUNBUFFERED": "1",
    }
    paths = ["--config", str(config), "--spool", str(spool_path)]
    enrolled = subprocess.run(
        [
            str(Path(sys.executable).with_name("omnitensor-agent")), "enroll",
            "--portal", web.url, "--code", code, *paths, "--collector", "simulate",
            "--simulate", "2",
        ],
        env=agent_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert enrolled.returncode == 0, enrolled.stderr + tail(web.log_path)
    node = Node.objects.get(owner=owner)
    assert json.loads(config.read_text())["report_interval_s"] == 2

    (tmp_path / "agent_tap.py").write_text(AGENT_TAP)
    agent_log = tmp_path / "agent.log"
    with open(agent_log, "ab") as log:
        agent = subprocess.Popen(
            [sys.executable, str(tmp_path / "agent_tap.py"), "run", "--duration", "28", *paths],
            env=agent_env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    reaper.add(sigkill_tree, agent)

    batches = TelemetryBatch.objects.filter(node=node)
    wait_until(
        lambda: batches.count() >= 2,
        20,
        "the agent delivered nothing",
        agent_log,
        web.log_path,
    )
    web.kill()
    accepted_before_kill = batches.count()

    # Down until the agent has seen it: a batch it has tried to send three times (two
    # failures, with the agent's backoff between them: some seconds of outage).
    def agent_retried():
        return any(attempts >= 3 for _, attempts in read_spool(spool_path)["batches"])

    wait_until(agent_retried, 20, "the agent never retried", agent_log, interval=0.2)
    web.start()

    assert agent.wait(timeout=90) == 0, tail(agent_log)
    assert batches.count() > accepted_before_kill, "nothing was delivered after the restart"
    wait_until(
        lambda: not batches.filter(status=PENDING).exists(),
        30,
        "batches left pending",
        worker.log_path,
        tmp_path / "beat.log",
    )

    produced = [json.loads(line) for line in tap.read_text().splitlines()]
    produced_keys = {(s["gpu_uuid"], datetime.fromisoformat(s["ts"])) for s in produced}
    assert len(produced_keys) == len(produced), "the agent produced a (gpu, ts) twice"
    gpus = {g.uuid for g in node.gpus.all()}
    assert {u for u, _ in produced_keys} == gpus and len(gpus) == 2

    spool = read_spool(spool_path)
    assert spool["samples"] == 0 and spool["batches"] == [], spool
    assert spool["counters"].get("sent") == len(produced), spool
    assert not spool["counters"].get("dropped") and not spool["counters"].get("rejected"), spool

    stored = {
        (u, ts.astimezone(UTC))
        for u, ts in Sample.objects.filter(gpu__node=node).values_list("gpu__uuid", "ts")
    }
    assert stored == produced_keys, (
        f"{len(produced_keys - stored)} produced samples missing, "
        f"{len(stored - produced_keys)} stored that were never produced"
    )
    assert Sample.objects.filter(gpu__node=node).count() == len(produced)
    assert set(batches.values_list("status", flat=True)) == {PROCESSED}
