"""End to end: the web process killed under a running agent, and every sample the agent
produced is stored exactly once (DESIGN.md "Agent API (v1)", contributors/telemetry/store.py). Real
processes: gunicorn, a Celery worker and beat, and the node agent, against the test database.

The test needs the set of samples the agent produced, but the spool deletes what the portal
accepted; it runs the agent's own `main()` with a tap that appends every sample handed to
`Spool.add` to a file, and reads the spool's SQLite tables for what is left.
"""

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contributors.models import Contributor, EnrollmentCode, Node, Sample, TelemetryBatch
from tests.support.brokers import purge_queues, unique_queue
from tests.support.posting import PENDING, PROCESSED
from tests.support.processes import (
    BeatProcess,
    WebProcess,
    free_port,
    portal_env,
    sigkill_tree,
    start_worker,
    tail,
    wait_until,
)

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

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


class TappedAgent:
    """The node agent as its CLI runs it, in a folder of the test's own, with `AGENT_TAP`
    writing down every sample it produces."""

    def __init__(self, tmp_path: Path):
        self.config, self.spool = tmp_path / "config.json", tmp_path / "spool.db"
        self.tap, self.log = tmp_path / "tap", tmp_path / "agent.log"
        self.script = tmp_path / "agent_tap.py"
        self.env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
            "XDG_STATE_HOME": str(tmp_path / "xdg-state"),
            "AGENT_SAMPLE_TAP": str(self.tap),
            "PYTHONUNBUFFERED": "1",
        }
        self.paths = ["--config", str(self.config), "--spool", str(self.spool)]

    def enroll(self, portal: str, code: str) -> subprocess.CompletedProcess:
        """`omnitensor-agent enroll` with two simulated GPUs."""
        return subprocess.run(
            [
                str(Path(sys.executable).with_name("omnitensor-agent")), "enroll",
                "--portal", portal, "--code", code, *self.paths, "--collector", "simulate",
                "--simulate", "2",
            ],
            env=self.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    def run(self, seconds: int) -> subprocess.Popen:
        """`omnitensor-agent run` for `seconds`, in the background, through the tap."""
        self.script.write_text(AGENT_TAP)
        with open(self.log, "ab") as log:
            return subprocess.Popen(
                [sys.executable, str(self.script), "run", "--duration", str(seconds), *self.paths],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip


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
    cli = TappedAgent(tmp_path)
    enrolled = cli.enroll(web.url, code)
    assert enrolled.returncode == 0, enrolled.stderr + tail(web.log_path)
    node = Node.objects.get(owner=owner)
    assert json.loads(cli.config.read_text())["report_interval_s"] == 2

    agent = cli.run(seconds=28)
    agent_log = cli.log
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
        return any(attempts >= 3 for _, attempts in read_spool(cli.spool)["batches"])

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

    produced = [json.loads(line) for line in cli.tap.read_text().splitlines()]
    produced_keys = {(s["gpu_uuid"], datetime.fromisoformat(s["ts"])) for s in produced}
    assert len(produced_keys) == len(produced), "the agent produced a (gpu, ts) twice"
    gpus = {g.uuid for g in node.gpus.all()}
    assert {u for u, _ in produced_keys} == gpus and len(gpus) == 2

    spool = read_spool(cli.spool)
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
