"""Real processes for tests: Celery workers and beat, the portal under gunicorn, and ways to
kill them as an OOM killer or a power cut would (SIGKILL of a whole process tree). They see the
test database (`database_url_for_test_db`); brokers of the tests' own are in brokers.py.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

BASE_DIR = Path(__file__).resolve().parents[2]
WEB_WORKERS = 2  # gunicorn worker processes of a WebProcess


def database_url_for_test_db() -> str:
    """A DATABASE_URL naming the database this test run uses (pytest-django's test database)."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    user = quote(db.get("USER") or "", safe="")
    password = quote(db.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{db['NAME']}"


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.1, message: str = ""):
    """Poll `predicate` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(message or f"condition not met within {timeout} s")


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
    """Like `wait_for`, failing with the tails of `logs` as they are at the deadline
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


class WorkerProcess:
    """A `celery -A portal worker` process consuming one queue of its own."""

    def __init__(self, queue: str, log_path: Path, extra_env: dict | None = None):
        self.queue = queue
        self.log_path = log_path
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen | None = None

    def start(self) -> "WorkerProcess":
        env = {
            **os.environ,
            "DEBUG": "true",
            "DATABASE_URL": database_url_for_test_db(),
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        cmd = [
            sys.executable, "-m", "celery", "-A", "portal", "worker",
            "--queues", self.queue, "--concurrency", "1", "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--hostname", f"{self.queue}@%h",
        ]  # fmt: skip
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, cwd=BASE_DIR, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        return self

    def stop(self, sig_kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            if sig_kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_worker(reaper: Reaper, queue: str, log: Path, extra_env: dict | None = None):
    worker = WorkerProcess(queue, log, extra_env).start()
    reaper.add(worker.stop)
    return worker


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
