"""Brokers of the tests' own: a private redis-server, or a private filesystem-broker folder.

Tests that lose or stop a broker point both the workers (environment) and this process's Celery
app (`producer_using`, with the transport options portal/settings.py derives for that broker)
at one of these, so nothing is done to the machine's shared Redis or to `var/broker`. Tests on
the configured broker send to queues no other process reads and purge them afterwards.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager, suppress
from pathlib import Path

import kombu.pools
import pytest
from django.conf import settings
from django.core.cache import cache

from contributors.telemetry import dispatch
from portal.celery_app import app as celery_app
from tests.support.processes import BASE_DIR, free_port, sigkill_tree, tail, wait_until


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
        cache.delete(dispatch.DRAIN_FLAG.format(slot=slot))
    dispatch.forget()
    # Web processes remember seeing a flag for half a grace; let that pass too.
    time.sleep(dispatch.DRAIN_GRACE_S)


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
