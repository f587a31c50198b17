"""GET /api/v1/me/rewards and /api/v1/me/balance: session auth, ranges, the error shape."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import Client

from tests.support.agent_api import iso
from tests.support.rewards import (
    A1,
    H100,
    IDLE_POOL,
    Rig,
    epoch_start,
    gpu,
    ingest_all,
    rewards_of,
    samples,
)
from tests.support.siwe import signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_epochs(alice):
    first, second = epoch_start(4), epoch_start(3)
    rig = Rig(alice, [gpu(A1, H100)])
    rig.report(samples(A1, first, used=1024) + samples(A1, second, used=1024))
    ingest_all()
    call_command("settle_epochs", "--until", iso(second + timedelta(hours=1)), stdout=None)
    return first, second


def test_rewards_need_a_session():
    response = Client().get("/api/v1/me/rewards")
    assert response.status_code == 403
    assert response.json()["error"] == "not_authenticated"
    assert Client().get("/api/v1/me/balance").json()["error"] == "not_authenticated"


def test_rewards_filter_epochs_by_start(alice, two_epochs):
    first, second = two_epochs
    assert len(rewards_of(alice)["entries"]) == 2
    only_second = rewards_of(alice, **{"from": iso(second)})
    assert [e["epoch_start"] for e in only_second["entries"]] == [iso(second)]
    assert only_second["totals"]["earned_wei"] == str(IDLE_POOL)
    only_first = rewards_of(alice, to=iso(second))
    assert [e["epoch_start"] for e in only_first["entries"]] == [iso(first)]


def test_a_bad_time_is_refused_in_the_api_error_shape(alice):
    response = signed_in(alice).get("/api/v1/me/rewards", {"from": "yesterday"})
    assert response.status_code == 400
    assert response.json() == {
        "error": "validation_failed",
        "detail": "from must be an RFC 3339 date-time with an offset.",
        "errors": [{"field": "from", "error": "an RFC 3339 date-time with offset"}],
    }


def test_balance_is_everything_earned_while_no_claims_exist(alice, bob, two_epochs):
    body = signed_in(alice).get("/api/v1/me/balance").json()
    assert body == {
        "earned_wei": str(2 * IDLE_POOL),
        "claimed_wei": "0",
        "pending_wei": "0",
        "claimable_wei": str(2 * IDLE_POOL),
    }
    assert signed_in(bob).get("/api/v1/me/balance").json()["earned_wei"] == "0"
    assert rewards_of(bob)["entries"] == []


def test_estimate_rewards_uses_the_last_settled_totals(two_epochs, capsys):
    call_command("estimate_rewards", "--model", "NVIDIA GeForce RTX 4090", "--hours", "24",
                 "--utilization", "60")  # fmt: skip
    out = capsys.readouterr().out
    assert "weight 0.5300" in out
    # No compute units were earned in those epochs: alone, it would take every compute pool,
    # 1,000 OMNIT per hour.
    assert "compute  ≈ 24000 OMNIT (24000000000000000000000 wei)" in out
