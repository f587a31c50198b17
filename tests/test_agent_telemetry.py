"""POST /api/v1/agent/telemetry, as DESIGN.md "Agent API (v1)" fixes it: a batch is accepted at
once and one ingest enqueued, a replayed batch gets its first answer, and a request without a
valid token, with a body that is not what the API takes, or past the limits is refused.

The enqueue is captured (`django_capture_on_commit_callbacks`), not run.
"""

import json
import sys
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from contributors.models import Sample, TelemetryBatch
from contributors.telemetry import store as ingest
from tests.support.agent_api import (
    CONFIG,
    H100,
    JOBS,
    TELEMETRY,
    Agent,
    batch,
    enroll,
    gpu,
    iso,
    nvml_uuid,
    sample,
    send_and_ingest,
)

pytestmark = pytest.mark.django_db


# --- acceptance and idempotency ---------------------------------------------------------------


def test_telemetry_is_accepted_and_one_ingest_enqueued(agent, django_capture_on_commit_callbacks):
    body = batch([sample(H100["uuid"]), sample(H100["uuid"], timezone.now())])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = agent.send(body)

    assert response.status_code == 202
    assert response.json() == {"batch_id": body["batch_id"], "accepted": 2, "rejected": []}
    assert len(callbacks) == 1
    row = agent.batch_row(body["batch_id"])
    assert (row.status, row.sample_count) == (TelemetryBatch.Status.PENDING, 2)
    assert not Sample.objects.exists()  # the worker stores them, not the request


def test_replayed_batch_gets_the_first_answer_and_is_not_stored_twice(
    agent, django_capture_on_commit_callbacks
):
    body = batch([sample(H100["uuid"]), sample(nvml_uuid("unknown"))])
    with django_capture_on_commit_callbacks(execute=False) as first_callbacks:
        first = agent.send(body)
    assert first.status_code == 202
    assert len(first_callbacks) == 1

    # Even with other content, a replay is not read again.
    replay_body = {**body, "samples": [sample(H100["uuid"], timezone.now())] * 3}
    with django_capture_on_commit_callbacks(execute=False) as replay_callbacks:
        replay = agent.send(replay_body)

    assert replay.status_code == 200
    assert replay.json() == first.json()
    assert first.json()["rejected"] == [{"index": 1, "error": "unknown_gpu"}]
    assert replay_callbacks == []
    assert TelemetryBatch.objects.count() == 1
    ingest.ingest(agent.batch_row(body["batch_id"]).pk)
    assert Sample.objects.count() == 1


def test_replay_after_ingest_still_gets_the_first_answer(agent, django_capture_on_commit_callbacks):
    body = batch([sample(H100["uuid"])])
    first = send_and_ingest(agent, body, django_capture_on_commit_callbacks)

    replay = agent.send(body)
    assert replay.status_code == 200
    assert replay.json() == first
    assert Sample.objects.count() == 1


def test_same_batch_id_from_another_node_is_another_batch(alice, agent):
    other = Agent(enroll(alice, [gpu(nvml_uuid("second"))], hostname="rig-2"))
    batch_id = str(uuid.uuid4())

    first = agent.send(batch([sample(H100["uuid"])], batch_id=batch_id))
    second = other.send(batch([sample(nvml_uuid("second"))] * 1, batch_id=batch_id))

    assert (first.status_code, second.status_code) == (202, 202)
    assert second.json() == {"batch_id": batch_id, "accepted": 1, "rejected": []}
    assert TelemetryBatch.objects.filter(batch_id=batch_id).count() == 2


def test_batch_id_is_answered_in_canonical_form(agent):
    batch_id = uuid.uuid4()
    response = agent.send(batch([], batch_id=str(batch_id).upper()))

    assert response.status_code == 202
    assert response.json()["batch_id"] == str(batch_id)
    # The same UUID spelled differently is a replay.
    assert agent.send(batch([], batch_id=str(batch_id))).status_code == 200


def test_batch_without_accepted_samples_enqueues_nothing(agent, django_capture_on_commit_callbacks):
    body = batch([sample(nvml_uuid("unknown"))])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = agent.send(body)

    assert response.status_code == 202
    assert response.json()["accepted"] == 0
    assert callbacks == []
    assert agent.batch_row(body["batch_id"]).status == TelemetryBatch.Status.PROCESSED


def test_clock_skew_is_estimated_from_sent_at(agent, django_capture_on_commit_callbacks):
    body = batch([sample(H100["uuid"])], sent_at=iso(timezone.now() + timedelta(seconds=90)))
    send_and_ingest(agent, body, django_capture_on_commit_callbacks)

    assert agent.batch_row(body["batch_id"]).clock_skew_s == pytest.approx(90, abs=5)
    assert agent.node.clock_skew_s == pytest.approx(90, abs=5)


# --- authentication, body, limits -------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer nonsense",
        "Basic dXNlcjpwYXNz",
        "Bearer omt_0123456789ab_notthesecret",
    ],
)
def test_telemetry_without_a_valid_token_is_invalid_token(agent, header):
    headers = {} if header is None else {"Authorization": header}
    response = Client().post(TELEMETRY, batch([]), content_type="application/json", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


@pytest.mark.parametrize("method, url", [("post", TELEMETRY), ("get", CONFIG), ("post", JOBS)])
def test_a_401_names_the_bearer_scheme(method, url):
    """RFC 9110: a 401 carries WWW-Authenticate (the views define one: Bearer realm=…)."""
    response = getattr(Client(), method)(url, {}, content_type="application/json")

    assert response.status_code == 401
    assert response.get("WWW-Authenticate", "").startswith("Bearer")


def test_telemetry_with_a_tampered_token_is_invalid_token(agent):
    tampered = agent.token[:-2] + ("AA" if not agent.token.endswith("AA") else "BB")
    response = Client().post(
        TELEMETRY,
        batch([]),
        content_type="application/json",
        headers={"Authorization": f"Bearer {tampered}"},
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_telemetry_with_a_revoked_token_is_token_revoked(agent):
    agent.node.revoke()
    response = agent.send(batch([sample(H100["uuid"])]))

    assert response.status_code == 403
    assert response.json()["error"] == "token_revoked"
    assert not TelemetryBatch.objects.exists()


@pytest.mark.parametrize("raw", ["{not json", "", "[1, 2]", '"a string"', "\xff\xfe"])
def test_telemetry_that_is_not_a_json_object_is_invalid_json(agent, raw):
    response = agent.send(raw, raw=True)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_json"


@pytest.mark.parametrize(
    "changes, fields",
    [
        ({"sent_at": None}, ["sent_at"]),
        ({"sent_at": "2024-05-01T10:00:00"}, ["sent_at"]),  # no offset
        ({"sent_at": "yesterday"}, ["sent_at"]),
        ({"samples": None}, ["samples"]),
        ({"samples": {"0": {}}}, ["samples"]),
        ({"gpus": "GPU-1"}, ["gpus"]),
        ({"sent_at": 5, "samples": "x"}, ["sent_at", "samples"]),
    ],
)
def test_telemetry_with_bad_fields_is_validation_failed(agent, changes, fields):
    body = {k: v for k, v in {**batch([]), **changes}.items() if v is not None}
    response = agent.send(body)

    assert response.status_code == 400
    assert response.json()["error"] == "validation_failed"
    assert [e["field"] for e in response.json()["errors"]] == fields
    assert not TelemetryBatch.objects.exists()


@pytest.mark.parametrize("batch_id", [None, "not-a-uuid", 42, "", ["x"]])
def test_telemetry_with_a_bad_batch_id_is_validation_failed(agent, batch_id):
    body = batch([sample(H100["uuid"])], batch_id=batch_id)
    if batch_id is None:
        del body["batch_id"]
    response = agent.send(body)

    assert response.status_code == 400
    assert response.json()["error"] == "validation_failed"
    assert [e["field"] for e in response.json()["errors"]] == ["batch_id"]


def test_more_than_1000_samples_is_batch_too_large(agent):
    start = timezone.now() - timedelta(hours=1)
    samples = [sample(H100["uuid"], start + timedelta(seconds=i)) for i in range(1001)]
    response = agent.send(batch(samples))

    assert response.status_code == 413
    assert response.json()["error"] == "batch_too_large"
    assert not TelemetryBatch.objects.exists()

    exactly = agent.send(batch(samples[:1000]))
    assert exactly.status_code == 202
    assert exactly.json()["accepted"] == 1000


def test_a_body_over_one_mib_is_batch_too_large(agent):
    body = batch([sample(H100["uuid"])], padding="x" * (1024 * 1024))
    response = agent.send(body)

    assert response.status_code == 413
    assert response.json()["error"] == "batch_too_large"
    assert not TelemetryBatch.objects.exists()


def test_a_body_of_exactly_one_mib_is_read(agent):
    body = batch([sample(H100["uuid"])], padding="")
    size = len(json.dumps(body).encode())
    body["padding"] = "x" * (1024 * 1024 - size)
    assert len(json.dumps(body).encode()) == 1024 * 1024

    response = agent.send(body)
    assert (response.status_code, response.json()["accepted"]) == (202, 1)

    body["batch_id"], body["padding"] = str(uuid.uuid4()), body["padding"] + "x"
    assert agent.send(body).status_code == 413


def test_telemetry_past_the_rate_limit_is_throttled(alice, agent, settings):
    settings.TELEMETRY_RATE_PER_MIN = 3
    if time.time() % 60 > 57:  # keep the requests inside one fixed window
        time.sleep(60 - time.time() % 60 + 0.1)
    statuses = [agent.send(batch([])).status_code for _ in range(3)]
    throttled = agent.send(batch([]))

    assert statuses == [202, 202, 202]
    assert throttled.status_code == 429
    assert throttled.json()["error"] == "throttled"
    assert 1 <= int(throttled["Retry-After"]) <= 61
    assert TelemetryBatch.objects.count() == 3
    # The limit is per node token.
    other = Agent(enroll(alice, hostname="rig-2"))
    assert other.send(batch([])).status_code == 202


def burst(agent: Agent, count: int) -> list[int]:
    """`count` telemetry requests of one node sent at once from threads; their statuses."""
    barrier = threading.Barrier(count)
    statuses = []

    def attempt():
        try:
            client, body = Client(), json.dumps(batch([]))
            barrier.wait()
            response = client.post(
                TELEMETRY, body, content_type="application/json", headers=agent.auth()
            )
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(count)]
    if time.time() % 60 > 57:  # keep the burst inside one fixed window
        time.sleep(60 - time.time() % 60 + 0.1)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # interleave the threads finely, as separate processes would
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        sys.setswitchinterval(interval)
    return sorted(statuses)


def test_concurrent_requests_cannot_exceed_the_rate_limit(alice, settings, transactional_db):
    """Web processes count together (the cache is shared); a race must not let extra requests
    through. A lost update only shows when requests interleave just so, hence several bursts."""
    settings.TELEMETRY_RATE_PER_MIN = 3
    agents = [Agent(enroll(alice, hostname=f"rig-{i}")) for i in range(6)]

    results = [burst(agent, 16) for agent in agents]

    assert results == [[202] * 3 + [429] * 13] * len(agents)
    assert TelemetryBatch.objects.count() == 3 * len(agents)


@pytest.mark.parametrize("sent_at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_telemetry_with_an_unrepresentable_sent_at_is_refused_not_a_server_error(agent, sent_at):
    response = agent.send(batch([sample(H100["uuid"])], sent_at=sent_at))
    assert response.status_code == 400
    assert response.json()["error"] == "validation_failed"
