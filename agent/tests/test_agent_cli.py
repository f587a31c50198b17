"""The CLI as users run it: the console script and ``python -m``, in subprocesses."""

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

AGENT_DIR = Path(__file__).resolve().parents[2] / "agent"
SCRIPT = shutil.which("omnitensor-agent", path=str(Path(sys.executable).parent))


def _env(tmp_path):
    env = dict(os.environ)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    # Works without `pip install -e agent/` as well.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(AGENT_DIR), env.get("PYTHONPATH")]))
    return env


def _agent(tmp_path, *args, module=False, timeout=60):
    if module or SCRIPT is None:
        cmd = [sys.executable, "-m", "omnitensor_agent", *args]
    else:
        cmd = [SCRIPT, *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, env=_env(tmp_path), timeout=timeout, check=False
    )


@pytest.mark.skipif(SCRIPT is None, reason="console script not installed (pip install -e agent/)")
def test_console_script_exists(tmp_path):
    out = _agent(tmp_path, "--version")
    assert out.returncode == 0 and "omnitensor-agent" in out.stdout


def test_status_with_simulated_gpus(tmp_path):
    out = _agent(
        tmp_path, "status", "--collector", "simulate", "--simulate", "3", "--json", module=True
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["enrolled"] is False and report["collector"] == "simulate"
    assert len(report["gpus"]) == 3 and len(report["samples"]) == 3
    text = _agent(tmp_path, "status", "--simulate", "2")
    assert text.returncode == 0 and "queued: nothing" in text.stdout


def test_enroll_writes_private_config_then_run_reports(tmp_path, portal):
    out = _agent(
        tmp_path, "enroll", "--portal", portal.url, "--code", "ABCD-1234", "--simulate", "2"
    )
    assert out.returncode == 0, out.stderr
    (enroll,) = [r for r in portal.requests if r.path == "/api/v1/agent/enroll"]
    assert enroll.body["enrollment_code"] == "ABCD-1234"
    assert enroll.body["hostname"] and enroll.body["agent_version"] == "0.1.0"
    assert len(enroll.body["gpus"]) == 2
    assert {"uuid", "name", "memory_total_mib"} <= set(enroll.body["gpus"][0])

    config_path = tmp_path / "config" / "omnitensor-agent" / "config.json"
    assert stat.S_IMODE(config_path.stat().st_mode) == 0o600
    config = json.loads(config_path.read_text())
    assert config["node_token"] == portal.token and config["collector"] == "simulate"

    again = _agent(tmp_path, "enroll", "--portal", portal.url, "--code", "X", "--simulate", "1")
    assert again.returncode == 1 and "--force" in again.stderr

    # The fake portal's config says sample and report every 1 s. No collector flags: the
    # config remembers that enrollment used two simulated GPUs.
    run = _agent(tmp_path, "run", "--duration", "3.5", module=True)
    assert run.returncode == 0, run.stderr
    assert any(r.path == "/api/v1/agent/config" for r in portal.requests)
    posts = portal.telemetry()
    assert posts, run.stderr
    samples = [s for p in posts for s in p.body["samples"]]
    assert len(samples) >= 6  # ~4 ticks x 2 GPUs
    assert {s["gpu_uuid"] for s in samples} == {g["uuid"] for g in enroll.body["gpus"]}
    assert len({p.body["batch_id"] for p in posts}) == len(posts)

    status = _agent(tmp_path, "status", "--simulate", "2", "--json")
    report = json.loads(status.stdout)
    assert report["enrolled"] and report["queue"]["queued"] == 0
    assert report["queue"]["sent_total"] == len(samples)


def test_run_stops_with_a_plain_message_on_revoked_token(tmp_path, portal):
    assert (
        _agent(
            tmp_path, "enroll", "--portal", portal.url, "--code", "C", "--simulate", "1"
        ).returncode
        == 0
    )
    portal.token = "rotated"  # the portal no longer knows this node's token
    run = _agent(tmp_path, "run", "--simulate", "1", "--duration", "5")
    assert run.returncode == 3
    assert "refused this node" in run.stderr and "Traceback" not in run.stderr


def test_bad_enrollment_code_and_missing_config(tmp_path, portal):
    portal.enroll_status = 400
    out = _agent(tmp_path, "enroll", "--portal", portal.url, "--code", "nope", "--simulate", "1")
    assert out.returncode == 1 and "invalid_enrollment_code" in out.stderr
    run = _agent(tmp_path, "run", "--simulate", "1")
    assert run.returncode == 1 and "enroll" in run.stderr and "Traceback" not in run.stderr
