"""Real processes for fault tests: a private redis-server, a private filesystem broker, the
portal under gunicorn, Celery workers and beat, and ways to kill them as an OOM killer or a
power cut would (SIGKILL of a whole process tree).

Brokers of their own: tests that lose or stop a broker start a private redis-server, or a
private filesystem-broker folder, and point both the workers (environment) and this process's
Celery app (`producer_using`, with the transport options portal/settings.py derives for that
broker) at it, so nothing is done to the machine's shared Redis or to `var/broker`. Tests on the
configured broker send to queues no other process reads and purge them afterwards.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import kombu.pools
import pytest
from django.conf import settings
from django.core.cache import cache

from contributors import tasks as tasks_module
from portal.celery_app import app as celery_app
from tests.conftest import BASE_DIR, WorkerProcess, database_url_for_test_db

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


@contextmanager
def reaping():
    """A Reaper whose cleanups run on the way out (test modules make it their `reaper`
    fixture)."""
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


class RedisServer:
    """A private `redis-server` with nothing persisted, so a kill loses every queue and key in
    it; it comes back on the same port. Database 0 is the broker's, 1 the cache's."""

    kind = "redis"

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.cache_url = f"redis://127.0.0.1:{self.port}/1"
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
            with suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)  # a stopped process dies only awake
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


@dataclass
class Reply:
    status: int
    seconds: float
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


def http_request(
    url: str, method: str = "GET", body: dict | None = None, token: str = "", timeout: float = 60
) -> Reply:
    """One request to a real web process, whatever it answers."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(  # noqa: S310 - always http://127.0.0.1
        url,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers=headers,
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status, answer, content = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        status, answer, content = exc.code, dict(exc.headers), exc.read()
    return Reply(status, time.monotonic() - started, answer, content)


def http_post(url: str, body: dict, token: str) -> tuple[int, float]:
    """POST JSON to a real web process; (status, seconds it took)."""
    reply = http_request(url, "POST", body, token)
    return reply.status, reply.seconds


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
