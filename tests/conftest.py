"""Shared fixtures: real worker processes that see the test database, broker and cache."""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection
from hypothesis import settings as hypothesis_settings

# Fixtures for real-browser tests (Chromium through Playwright).
pytest_plugins = ["tests.browser"]

BASE_DIR = Path(__file__).resolve().parent.parent

# Property tests check behaviour, not speed (benchmarks do that): no per-example deadline, which
# a loaded 2-core machine overruns at random.
hypothesis_settings.register_profile("portal", deadline=None)
hypothesis_settings.load_profile("portal")


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


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Rate limits, heartbeats and drain flags live in the shared cache, and web processes
    remember a drain flag for a moment: every test starts without them."""
    from django.core.cache import cache

    from contributors import tasks
    from portal import ratelimit

    cache.clear()
    ratelimit.clear()
    tasks._flag_seen_at.clear()


@pytest.fixture(autouse=True)
def _roomy_address_limits(settings):
    """Every test client comes from one address (127.0.0.1), and many tests enroll machines
    or try tokens by the dozen: the limits per client address are raised for them. Tests of
    those limits set their own."""
    settings.ENROLL_RATE_PER_MIN = 10_000
    settings.BAD_TOKEN_RATE_PER_MIN = 10_000
    settings.SIWE_NONCE_RATE_PER_MIN = 10_000


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


@pytest.fixture
def worker(tmp_path):
    """Start a real Celery worker on a fresh queue; tasks must be sent with `queue=worker.queue`."""
    process = WorkerProcess(f"test-{uuid.uuid4().hex[:12]}", tmp_path / "worker.log").start()
    yield process
    process.stop()


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.1, message: str = ""):
    """Poll `predicate` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(message or f"condition not met within {timeout} s")
