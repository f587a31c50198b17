"""Proof-of-GPU challenges end to end against a real HTTP server (conftest.FakePortal): the
runner's prover thread solves, commits and reveals while telemetry keeps flowing."""

import logging
import random
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from omnitensor_agent.api import PortalClient
from omnitensor_agent.collectors import make_collector
from omnitensor_agent.config import AgentConfig
from omnitensor_agent.proof import NumpyBackend, solve, spec
from omnitensor_agent.proof.prover import Challenge, Prover
from omnitensor_agent.proof.selftest import reference_digests
from omnitensor_agent.runner import Runner


def make_challenge(n=128, rounds=2, within_s=120.0, seed=None):
    due = datetime.now(UTC) + timedelta(seconds=within_s)
    return {
        "challenge_id": str(uuid.uuid4()),
        "gpu_uuid": "GPU-00000000-0000-0000-0000-000000000000",
        "seed": (seed or random.randbytes(32)).hex(),
        "n": n,
        "rounds": rounds,
        "commit_deadline": due.isoformat().replace("+00:00", "Z"),
        "commit_within_s": within_s,
    }


def check_reveal(challenge, commit, reveal):
    """What the portal's worker does: recompute each row, hash the leaf up to the root."""
    seed, n, rounds = bytes.fromhex(challenge["seed"]), challenge["n"], challenge["rounds"]
    root = bytes.fromhex(commit["root"])
    rows = reveal["rows"]
    reference = reference_digests(seed, n, [(r["round"], r["row"]) for r in rows])
    for entry in rows:
        r, i = entry["round"], entry["row"]
        leaf = bytes.fromhex(entry["leaf"])
        assert len(leaf) == 512
        assert int.from_bytes(leaf[(i % 64) * 8 : (i % 64) * 8 + 8], "little") == reference[r, i]
        node = spec.leaf_hash(r, i // 64, leaf)
        path = [bytes.fromhex(h) for h in entry["path"]]
        index = r * (n // 64) + i // 64
        assert spec.root_from_path(node, index, rounds * n // 64, path) == root


class RunningAgent:
    """The real Runner with one simulated GPU, in a thread, reporting every second."""

    def __init__(self, portal, tmp_path, **kwargs):
        config = AgentConfig(portal=portal.url, node_id="n-1", node_token=portal.token)
        self.runner = Runner(
            config, make_collector("simulate", simulate=1), str(tmp_path / "spool.db"), **kwargs
        )
        self.thread = threading.Thread(target=self.runner.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self.runner

    def __exit__(self, *exc):
        self.runner.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


def finished(runner, cid):
    return lambda: runner.prover is not None and cid in runner.prover.outcomes


def wait_for(predicate, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_challenge_in_a_telemetry_answer_is_committed_once_and_revealed(portal, tmp_path):
    challenge = make_challenge(n=128, rounds=3)
    portal.challenges.append(challenge)
    cid = challenge["challenge_id"]
    with RunningAgent(portal, tmp_path) as runner:
        assert wait_for(finished(runner, cid)), [r.path for r in portal.requests]
        assert runner.prover.outcomes[cid] == "revealed 3 row(s)"
    # Listed in the config answer and in every telemetry answer until the commit: one commit.
    (commit,) = portal.to(f"/{cid}/commit")
    assert set(commit.body) == {"root", "elapsed_s"}
    assert isinstance(commit.body["elapsed_s"], float) and commit.body["elapsed_s"] > 0
    want = solve(NumpyBackend(), bytes.fromhex(challenge["seed"]), 128, 3)
    assert commit.body["root"] == want.root.hex()
    (reveal,) = portal.to(f"/{cid}/reveal")
    assert [(r["round"], r["row"]) for r in reveal.body["rows"]] == [(0, 0), (2, 127), (1, 67)]
    check_reveal(challenge, commit.body, reveal.body)


def test_telemetry_keeps_flowing_while_a_challenge_is_solved(portal, tmp_path):
    # Sized for about 8 s of NumPy on this machine (a loaded machine times the probe slower
    # than the challenge may run): several reports are due meanwhile.
    started = time.perf_counter()
    solve(NumpyBackend(), bytes(32), 1024, 2)
    per_round = (time.perf_counter() - started) / 2
    challenge = make_challenge(n=1024, rounds=max(2, round(8.0 / per_round)), within_s=300.0)
    cid = challenge["challenge_id"]
    with RunningAgent(portal, tmp_path) as runner:
        assert wait_for(lambda: len(portal.telemetry()) >= 1)
        delivered = time.monotonic()
        portal.challenges.append(challenge)
        assert wait_for(finished(runner, cid), timeout=120)
        assert runner.prover.outcomes[cid] == "revealed 3 row(s)"
    (commit,) = portal.to(f"/{cid}/commit")
    solving = commit.at - delivered
    during = [r for r in portal.telemetry() if delivered < r.at < commit.at]
    assert solving > 3, f"the challenge took only {solving:.1f} s: make it bigger"
    # Reports every second: no pause beyond the usual cadence while the prover works.
    assert len(during) >= solving - 2.5, (solving, len(during))
    check_reveal(challenge, commit.body, portal.to(f"/{cid}/reveal")[0].body)


def test_the_gpus_of_a_node_work_on_their_challenges_at_once(portal, tmp_path):
    """The portal challenges every GPU of a node together and times each from delivery: the
    second GPU must not wait for the first one's challenge to finish."""
    gpus = [f"GPU-{k:08d}-0000-0000-0000-000000000000" for k in (1, 2)]
    pair = [make_challenge(n=1024, rounds=16) for _ in gpus]
    for challenge, gpu in zip(pair, gpus, strict=True):
        challenge["gpu_uuid"] = gpu
    with RunningAgent(portal, tmp_path) as runner:
        assert wait_for(lambda: len(portal.telemetry()) >= 1)
        portal.challenges.extend(pair)
        starts = {}

        def both_started():
            for gpu in runner.prover.working:
                starts.setdefault(gpu, time.monotonic())
            return len(starts) == 2

        assert wait_for(both_started, timeout=60)
        for challenge in pair:
            assert wait_for(finished(runner, challenge["challenge_id"]), timeout=120)
    commits = {c["gpu_uuid"]: portal.to(f"/{c['challenge_id']}/commit")[0] for c in pair}
    # Both were in hand before either was committed.
    assert max(starts.values()) < min(record.at for record in commits.values())


def test_ignore_challenges_never_commits(portal, tmp_path):
    challenge = make_challenge()
    portal.challenges.append(challenge)
    with RunningAgent(portal, tmp_path, ignore_challenges=True) as runner:
        assert wait_for(lambda: len(portal.telemetry()) >= 2)
        assert runner.prover is None
    assert not portal.to("/commit")


# --- the prover alone, one challenge at a time -----------------------------------------------


@pytest.fixture
def prover(portal):
    stop = threading.Event()
    client = PortalClient(portal.url, portal.token, timeout_s=5)
    prover = Prover(client, stop, NumpyBackend(), retry_base_s=0.01, retry_cap_s=0.05)
    yield prover
    stop.set()


def _parse(item):
    return Challenge.parse(item, time.monotonic())


@pytest.mark.parametrize(
    "status, code",
    [
        (400, "validation_failed"),
        (404, "unknown_challenge"),
        (409, "challenge_closed"),
        (410, "late_commit"),
    ],
)
def test_a_4xx_commit_is_logged_and_dropped_without_retry(portal, prover, status, code, caplog):
    challenge = make_challenge(n=64, rounds=1)
    portal.challenges.append(challenge)
    portal.commit_script = [(status, {}, {"error": code, "detail": "no"})]
    with caplog.at_level(logging.INFO):
        outcome = prover.handle(_parse(challenge))
    assert outcome == f"dropped: commit refused ({status} {code}: no)"
    assert len(portal.to("/commit")) == 1 and not portal.to("/reveal")


def test_5xx_and_network_trouble_are_retried_until_an_answer(portal, prover):
    challenge = make_challenge(n=64, rounds=2)
    portal.challenges.append(challenge)
    portal.commit_script = [(500, {}, {"error": "bug"}), (503, {}, None)]
    portal.reveal_script = [(502, {}, None)]
    assert prover.handle(_parse(challenge)) == "revealed 3 row(s)"
    assert len(portal.to("/commit")) == 3 and len(portal.to("/reveal")) == 2
    cid = challenge["challenge_id"]
    check_reveal(challenge, portal.commits[cid], portal.reveals[cid])


def test_a_commit_whose_answer_was_lost_goes_on_with_the_rows_of_the_409(portal, prover):
    """The commit reached the portal but its answer did not reach us: the retry is refused
    (409 already_committed) with the same rows, and the reveal goes on."""
    challenge = make_challenge(n=64, rounds=2)
    portal.challenges.append(challenge)
    portal.lose_commit_answers = 1
    assert prover.handle(_parse(challenge)) == "revealed 3 row(s)"
    assert len(portal.to("/commit")) == 2 and len(portal.to("/reveal")) == 1
    cid = challenge["challenge_id"]
    check_reveal(challenge, portal.commits[cid], portal.reveals[cid])


def test_a_4xx_reveal_is_dropped(portal, prover):
    challenge = make_challenge(n=64, rounds=1)
    portal.challenges.append(challenge)
    portal.reveal_script = [(410, {}, {"error": "late_reveal", "detail": "too late"})]
    assert prover.handle(_parse(challenge)) == "dropped: reveal refused (410 late_reveal: too late)"
    assert len(portal.to("/reveal")) == 1


def test_retries_stop_at_the_deadline(portal, prover):
    challenge = make_challenge(n=64, rounds=1, within_s=1.0)
    portal.challenges.append(challenge)
    portal.commit_script = [(503, {}, None)] * 10_000
    started = time.monotonic()
    assert (
        prover.handle(_parse(challenge)) == "dropped: no answer to the commit before the deadline"
    )
    assert time.monotonic() - started < 5
    assert len(portal.to("/commit")) > 1


def test_a_challenge_past_its_deadline_is_skipped(portal, prover):
    challenge = make_challenge(n=64, rounds=1, within_s=-1.0)
    outcome = prover.handle(_parse(challenge))
    assert outcome.startswith("skipped") and not portal.to("/commit")


def test_rows_outside_the_challenge_are_not_answered(portal, prover):
    challenge = make_challenge(n=64, rounds=1)
    portal.challenges.append(challenge)
    portal.reveal_rows = [(0, 64)]
    assert prover.handle(_parse(challenge)).startswith("dropped: the commit answer asks for rows")
    assert not portal.to("/reveal")


def test_offers_dedupe_and_prune_closed_challenges(portal, prover):
    first, second = make_challenge(), make_challenge()
    prover.offer_answer({"challenges": [first, second]})
    prover.offer_answer({"challenges": [first, second]})
    prover.offer_answer({"accepted": 1})  # no list: nothing changes
    assert list(prover._pending) == [first["challenge_id"], second["challenge_id"]]
    # A replayed answer may be stale; a fresh one lists every open challenge.
    prover.offer_answer({"challenges": [first]}, complete=False)
    assert len(prover._pending) == 2
    prover.offer_answer({"challenges": [first]})
    assert list(prover._pending) == [first["challenge_id"]]
    assert prover.outcomes[second["challenge_id"]] == "closed before started"
    prover.offer_answer({"challenges": [second]})  # seen before: not taken again
    assert second["challenge_id"] not in prover._pending


@pytest.mark.parametrize(
    "change",
    [
        {"seed": "zz" * 32},
        {"seed": "00" * 31},
        {"n": 100},
        {"rounds": 0},
        {"challenge_id": ""},
        {"n": "128"},
        {"challenge_id": ["not", "a", "string"]},
    ],
)
def test_malformed_challenges_are_ignored(prover, change, caplog):
    prover.offer([dict(make_challenge(), **change)])
    assert not prover._pending
    assert "malformed challenge" in caplog.text
