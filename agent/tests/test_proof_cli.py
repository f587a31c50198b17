"""``omnitensor-agent verify`` and the proof options of ``run``, in subprocesses."""

import importlib.util
import json

import pytest
from test_agent_cli import _agent
from test_proof_prover import check_reveal, make_challenge


def test_verify_with_numpy_passes_and_prints_the_fields(tmp_path):
    out = _agent(tmp_path, "verify", "--backend", "numpy", "--n", "256", "--rounds", "2")
    assert out.returncode == 0, out.stderr
    fields = dict(line.split(None, 1) for line in out.stdout.splitlines()[:5])
    assert fields == {
        "backend": "numpy",
        "device": fields["device"],
        "n": "256",
        "rounds": "2",
        "seconds": fields["seconds"],
    }
    assert float(fields["seconds"]) > 0 and fields["device"].endswith("(NumPy)")
    assert "int8 TOPS" in out.stdout and out.stdout.rstrip().endswith("PASS")


def test_verify_json_defaults_on_numpy(tmp_path):
    out = _agent(tmp_path, "verify", "--backend", "numpy", "--json", "--checks", "3", module=True)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["result"] == "PASS" and report["problems"] == []
    assert (report["n"], report["rounds"]) == (1024, 1)  # the CPU defaults
    assert report["known_answer"] is True and report["checked_rows"] <= 3
    assert report["tops"] == pytest.approx(2 * 1024**3 / report["seconds"] / 1e12, rel=0.01)


def test_verify_refuses_bad_sizes_and_missing_backends(tmp_path):
    out = _agent(tmp_path, "verify", "--backend", "numpy", "--n", "100")
    assert out.returncode == 1 and "multiple of 64" in out.stderr
    if importlib.util.find_spec("cupy") is None:
        out = _agent(tmp_path, "verify", "--backend", "cupy")
        assert out.returncode == 1 and "omnitensor-agent[cupy]" in out.stderr
        assert "Traceback" not in out.stderr


def test_run_answers_a_challenge(tmp_path, portal):
    enroll = _agent(tmp_path, "enroll", "--portal", portal.url, "--code", "C", "--simulate", "1")
    assert enroll.returncode == 0, enroll.stderr
    challenge = make_challenge(n=128, rounds=2)
    portal.challenges.append(challenge)
    run = _agent(tmp_path, "run", "--duration", "3", "--proof-backend", "torch")
    assert run.returncode == 0, run.stderr  # simulated GPUs are proved with numpy anyway
    cid = challenge["challenge_id"]
    assert cid in portal.reveals, run.stderr
    check_reveal(challenge, portal.commits[cid], portal.reveals[cid])
    assert "revealed 3 row(s)" in run.stderr


def test_run_can_ignore_challenges_only_when_simulated(tmp_path, portal):
    enroll = _agent(tmp_path, "enroll", "--portal", portal.url, "--code", "C", "--simulate", "1")
    assert enroll.returncode == 0, enroll.stderr
    portal.challenges.append(make_challenge(n=64, rounds=1))
    run = _agent(tmp_path, "run", "--duration", "2.5", "--ignore-challenges")
    assert run.returncode == 0, run.stderr
    assert portal.telemetry() and not portal.to("/commit")
    real = _agent(
        tmp_path,
        "run",
        "--duration",
        "1",
        "--ignore-challenges",
        "--collector",
        "dcgm",
        "--dcgm-url",
        "http://127.0.0.1:9/metrics",
    )
    assert real.returncode == 1 and "only for simulated GPUs" in real.stderr
