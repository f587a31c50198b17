"""The sender against a real HTTP server on 127.0.0.1 (see conftest.FakePortal)."""

import random
import socket
from datetime import UTC, datetime

import pytest

from omnitensor_agent.api import PortalClient
from omnitensor_agent.sender import AuthError, Outcome, Sender, parse_retry_after
from omnitensor_agent.spool import Spool

SAMPLE = {
    "gpu_uuid": "GPU-1",
    "ts": "2026-07-01T12:00:00.000000Z",
    "utilization_gpu_pct": 50,
    "memory_used_mib": 100,
    "memory_total_mib": 8192,
}


@pytest.fixture
def spool(tmp_path):
    with Spool(tmp_path / "spool.db") as spool:
        spool.add([dict(SAMPLE, ts=f"2026-07-01T12:00:{i:02d}.000000Z") for i in range(3)])
        yield spool


def _sender(portal, spool, sleeps, token=None):
    client = PortalClient(portal.url, token or portal.token, timeout_s=5)
    return Sender(client, spool, sleep=sleeps.append, rng=random.Random(0))


def test_202_marks_sent_with_the_contract_body(portal, spool):
    sleeps = []
    sender = _sender(portal, spool, sleeps)
    gpus = [{"uuid": "GPU-1", "name": "X", "memory_total_mib": 8192}]
    assert sender.flush(gpus) == 1
    (req,) = portal.telemetry()
    assert req.method == "POST"
    assert req.headers["Authorization"] == f"Bearer {portal.token}"
    assert req.headers["Content-Type"] == "application/json"
    assert set(req.body) == {"batch_id", "sent_at", "gpus", "samples"}
    assert req.body["gpus"] == gpus
    assert len(req.body["samples"]) == 3
    sent_at = datetime.fromisoformat(req.body["sent_at"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - sent_at).total_seconds()) < 60
    assert req.body["sent_at"].endswith("Z")
    assert spool.stats()["queued"] == 0 and sleeps == []


def test_401_raises_a_plain_auth_error_and_keeps_data(portal, spool):
    sender = _sender(portal, spool, [], token="wrong")
    with pytest.raises(AuthError) as info:
        sender.flush()
    assert info.value.status == 401
    assert "invalid_token" in str(info.value) and "enroll" in str(info.value)
    assert spool.stats()["queued"] == 3  # nothing lost: a re-enrolled agent can still send


def test_403_revoked(portal, spool):
    portal.telemetry_script = [(403, {}, {"error": "token_revoked", "detail": "revoked"})]
    with pytest.raises(AuthError, match="revoked"):
        _sender(portal, spool, []).flush()


def test_429_honours_retry_after_and_resends_same_batch(portal, spool):
    portal.telemetry_script = [
        (429, {"Retry-After": "7"}, {"error": "throttled", "detail": "slow"})
    ]
    sleeps = []
    assert _sender(portal, spool, sleeps).flush() == 1
    first, second = portal.telemetry()
    assert sleeps == [7.0]
    assert first.body["batch_id"] == second.body["batch_id"]
    assert first.body["samples"] == second.body["samples"]
    assert spool.stats()["queued"] == 0


def test_5xx_backs_off_exponentially_with_jitter_and_cap(portal, spool):
    portal.telemetry_script = [(500, {}, {"error": "bug"})] * 5 + [(503, {}, None)]
    sleeps = []
    sender = _sender(portal, spool, sleeps)
    sender.backoff_cap_s = 10.0
    assert sender.flush() == 1
    ids = {r.body["batch_id"] for r in portal.telemetry()}
    assert len(portal.telemetry()) == 7 and len(ids) == 1
    ceilings = [2, 4, 8, 10, 10, 10]  # base 2 s doubling, capped at 10 s
    assert len(sleeps) == 6
    for slept, ceiling in zip(sleeps, ceilings, strict=True):
        assert ceiling / 2 <= slept <= ceiling
    assert len(set(sleeps)) > 1  # jitter: not all equal


def test_network_error_is_retried(spool):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps = []
    sender = Sender(
        PortalClient(f"http://127.0.0.1:{port}", "t", timeout_s=2), spool, sleep=sleeps.append
    )
    assert sender.send_one() is Outcome.RETRY
    assert sender.flush(max_attempts=2) == 0
    assert len(sleeps) == 2 and spool.stats()["queued"] == 3


@pytest.mark.parametrize("status", [400, 413])
def test_unfixable_batches_are_dropped_and_counted(portal, spool, status, caplog):
    portal.telemetry_script = [(status, {}, {"error": "batch_too_large", "detail": "too big"})]
    sender = _sender(portal, spool, [])
    assert sender.send_one() is Outcome.DROPPED
    assert spool.stats()["rejected_total"] == 3 and spool.stats()["queued"] == 0
    assert "dropped its 3 samples" in caplog.text


def test_replayed_200_is_success(portal, spool):
    portal.telemetry_script = [(200, {}, {"batch_id": "x", "accepted": 3, "rejected": []})]
    assert _sender(portal, spool, []).send_one() is Outcome.SENT


def test_retry_after_forms():
    now = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("12", now) == 12
    assert parse_retry_after("Wed, 01 Jul 2026 12:00:30 GMT", now) == 30
    assert parse_retry_after("garbage", now) is None
    assert parse_retry_after("999999", now) == 3600
