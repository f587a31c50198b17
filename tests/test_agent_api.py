"""The agent API over HTTP, as DESIGN.md "Agent API (v1)" fixes it: enroll, telemetry, config,
scheduler jobs, and the contributor's live view of their GPUs (/api/v1/me/gpus).

Telemetry answers at once and a worker stores the samples later; here the enqueue is captured
(`django_capture_on_commit_callbacks`) and the worker's function, `ingest.ingest`, is called
in-process on the stored batch.
"""

import hashlib
import json
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from contributors import ingest
from contributors.models import (
    GPU,
    EnrollmentCode,
    GpuFlag,
    Node,
    NodeFlag,
    Sample,
    TelemetryBatch,
)
from contributors.signin import contributor_for_sign_in
from rewards.models import Job
from tests.siwe_helpers import ALICE, BOB, make_message, sign
from tests.support.agent_api import nvml_uuid

pytestmark = pytest.mark.django_db

ENROLL = "/api/v1/agent/enroll"
TELEMETRY = "/api/v1/agent/telemetry"
CONFIG = "/api/v1/agent/config"
JOBS = "/api/v1/scheduler/jobs"
MY_GPUS = "/api/v1/me/gpus"

H100 = {
    "uuid": "GPU-11111111-2222-3333-4444-555555555555",
    "name": "NVIDIA H100 80GB HBM3",
    "memory_total_mib": 81559,
    "driver_version": "550.54.15",
    "pci_bus_id": "00000000:17:00.0",
}


# --- helpers ---------------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def gpu(uuid_: str, **overrides) -> dict:
    return {**H100, "uuid": uuid_, "pci_bus_id": "", **overrides}


def sample(uuid_, at: datetime | None = None, /, **overrides) -> dict:
    body = {
        "gpu_uuid": uuid_,
        "ts": iso(at or timezone.now() - timedelta(seconds=5)),
        "utilization_gpu_pct": 87.5,
        "memory_used_mib": 40000,
        "memory_total_mib": 81559,
        "temperature_c": 61.0,
        "power_w": 512.25,
    }
    body.update(overrides)
    return body


def batch(samples: list, **overrides) -> dict:
    body = {"batch_id": str(uuid.uuid4()), "sent_at": iso(timezone.now()), "samples": samples}
    body.update(overrides)
    return body


def new_code(owner) -> str:
    return EnrollmentCode.issue(owner)[1]


def enroll(owner, gpus=(), client=None, **fields):
    body = {
        "enrollment_code": new_code(owner),
        "hostname": "rig-1",
        "agent_version": "0.1.0",
        "gpus": list(gpus),
        **fields,
    }
    return (client or Client()).post(ENROLL, body, content_type="application/json")


class Agent:
    """An enrolled node as its agent sees it: a token and a client."""

    def __init__(self, response):
        assert response.status_code == 201, response.content
        body = response.json()
        self.node_id = body["node_id"]
        self.token = body["node_token"]
        self.client = Client()

    @property
    def node(self) -> Node:
        return Node.objects.get(pk=self.node_id)

    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def send(self, body, raw: bool = False):
        data = body if raw else json.dumps(body)
        return self.client.post(
            TELEMETRY, data, content_type="application/json", headers=self.auth()
        )

    def config(self):
        return self.client.get(CONFIG, headers=self.auth())

    def batch_row(self, batch_id: str) -> TelemetryBatch:
        return TelemetryBatch.objects.get(node_id=self.node_id, batch_id=batch_id)


@pytest.fixture
def alice():
    return contributor_for_sign_in(ALICE.address)


@pytest.fixture
def bob():
    return contributor_for_sign_in(BOB.address)


@pytest.fixture
def agent(alice):
    return Agent(enroll(alice, [H100]))


def send_and_ingest(agent: Agent, body: dict, capture) -> dict:
    """Post a batch, check that exactly one ingest is enqueued, and run it."""
    with capture(execute=False) as callbacks:
        response = agent.send(body)
    assert response.status_code == 202, response.content
    assert len(callbacks) == 1
    assert ingest.ingest(agent.batch_row(body["batch_id"]).pk) == response.json()["accepted"]
    return response.json()


def signed_in(account) -> Client:
    """A browser session signed in through SIWE with `account`."""
    client = Client(enforce_csrf_checks=True)
    nonce = client.get("/auth/nonce").json()["nonce"]
    message = make_message(account, nonce)
    response = client.post(
        "/auth/verify",
        {"message": message, "signature": sign(account, message)},
        content_type="application/json",
        headers={"X-CSRFToken": client.cookies["csrftoken"].value},
    )
    assert response.status_code == 200, response.content
    return client


def scheduler_token() -> str:
    from io import StringIO

    out = StringIO()
    call_command("create_service_token", "--scope", "scheduler", stdout=out)
    return out.getvalue().split()[-1]


# --- enroll ----------------------------------------------------------------------------------


def test_enroll_returns_the_node_and_its_token_once(alice):
    response = enroll(alice, [H100], hostname="  rig-1.lan ", agent_version="0.3.1")

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"node_id", "node_token", "sample_interval_s", "report_interval_s"}
    assert (body["sample_interval_s"], body["report_interval_s"]) == (10, 30)
    assert response["Cache-Control"] == "no-store"
    node = Node.objects.get(pk=body["node_id"])
    assert (node.owner, node.hostname, node.agent_version) == (alice, "rig-1.lan", "0.3.1")
    # Stored only as a hash.
    assert node.token_hash == hashlib.sha256(body["node_token"].encode()).hexdigest()
    assert body["node_token"] not in {node.token_prefix, node.token_hash}
    assert EnrollmentCode.objects.get(owner=alice).node == node


def test_enroll_registers_gpus_with_their_fields(alice):
    mig = {
        "uuid": "MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "name": "NVIDIA H100 80GB HBM3 MIG 3g.40gb",
        "memory_total_mib": 40192,
        "mig_parent_uuid": H100["uuid"],
    }
    response = enroll(alice, [mig, H100])

    assert response.status_code == 201
    assert "rejected_gpus" not in response.json()
    parent = GPU.objects.get(uuid=H100["uuid"])
    assert parent.node_id == response.json()["node_id"]
    assert (parent.name, parent.memory_total_mib) == (H100["name"], 81559)
    assert (parent.driver_version, parent.pci_bus_id) == ("550.54.15", "00000000:17:00.0")
    assert parent.committed_memory_mib is None and parent.enabled
    child = GPU.objects.get(uuid=mig["uuid"])
    assert child.mig_parent == parent
    assert (child.memory_total_mib, child.driver_version) == (40192, "")


def test_enrollment_code_is_single_use(alice):
    code = new_code(alice)
    body = {"enrollment_code": code, "hostname": "a", "agent_version": "1", "gpus": []}
    assert Client().post(ENROLL, body, content_type="application/json").status_code == 201

    again = Client().post(ENROLL, body, content_type="application/json")
    assert again.status_code == 409
    assert again.json()["error"] == "enrollment_code_used"
    assert Node.objects.count() == 1


def test_expired_enrollment_code_is_refused(alice):
    row, code = EnrollmentCode.issue(alice)
    past = timezone.now() - timedelta(hours=2)
    EnrollmentCode.objects.filter(pk=row.pk).update(
        created_at=past, expires_at=past + timedelta(hours=1)
    )
    response = Client().post(ENROLL, {"enrollment_code": code}, content_type="application/json")

    assert response.status_code == 410
    assert response.json()["error"] == "enrollment_code_expired"
    assert not Node.objects.exists()


def test_unknown_enrollment_code_is_refused(alice):
    new_code(alice)
    response = Client().post(
        ENROLL, {"enrollment_code": "enr_0123456789ab_nope"}, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_enrollment_code"
    assert response.json()["detail"]


@pytest.mark.parametrize(
    "fields, bad",
    [
        ({"enrollment_code": None}, "enrollment_code"),
        ({"enrollment_code": 12345}, "enrollment_code"),
        ({"hostname": 7}, "hostname"),
        ({"hostname": "h" * 256}, "hostname"),
        ({"agent_version": "v" * 51}, "agent_version"),
        ({"gpus": {"uuid": "GPU-1"}}, "gpus"),
        ({"gpus": None}, "gpus"),
    ],
)
def test_enroll_with_bad_fields_is_validation_failed(alice, fields, bad):
    code = new_code(alice)
    body = {"enrollment_code": code, "hostname": "rig", "agent_version": "1", "gpus": []}
    body.update(fields)
    response = Client().post(ENROLL, body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"] == "validation_failed"
    assert [e["field"] for e in response.json()["errors"]] == [bad]
    assert EnrollmentCode.objects.get().used_at is None  # the code is still good


def test_racing_enrollments_with_one_code_make_one_node(transactional_db):
    owner = contributor_for_sign_in(ALICE.address)
    code = EnrollmentCode.issue(owner)[1]
    body = {"enrollment_code": code, "hostname": "rig", "agent_version": "1", "gpus": []}

    barrier = threading.Barrier(4)
    responses = []

    def attempt(i):
        try:
            barrier.wait()
            body_i = {**body, "hostname": f"rig-{i}"}
            responses.append(Client().post(ENROLL, body_i, content_type="application/json"))
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409]
    assert {r.json().get("error") for r in responses if r.status_code == 409} == {
        "enrollment_code_used"
    }
    assert owner.nodes.count() == 1


def test_enroll_with_a_body_that_is_not_json_is_invalid_json():
    response = Client().post(ENROLL, "{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_json"


def test_enroll_with_a_gpu_of_another_node_lists_it_and_flags_the_enrolling_node(alice, bob):
    first = Agent(enroll(alice, [H100]))
    other = gpu(nvml_uuid("bob-own"), name="NVIDIA GeForce RTX 4090", memory_total_mib=24564)
    response = enroll(bob, [other, H100], hostname="bobs-box")

    assert response.status_code == 201
    body = response.json()
    assert body["rejected_gpus"] == [{"index": 1, "error": "gpu_owned_by_other_node"}]
    bobs_node = Node.objects.get(pk=body["node_id"])
    assert GPU.objects.get(uuid=H100["uuid"]).node_id == first.node_id  # not moved
    assert list(bobs_node.gpus.values_list("uuid", flat=True)) == [other["uuid"]]
    # A known uuid is not a weapon: the owner's GPU is not flagged, the enrolling node is.
    assert not GpuFlag.objects.exists()
    flag = NodeFlag.objects.get()
    assert (flag.node, flag.reason, flag.gpu_uuids, flag.reports) == (
        bobs_node,
        NodeFlag.Reason.FOREIGN_GPU,
        [H100["uuid"]],
        1,
    )
    assert flag.cleared_at is None


def test_enroll_with_an_invalid_gpu_entry_registers_the_others(alice):
    response = enroll(alice, [{"uuid": "GPU with spaces", "name": "x"}, H100])

    assert response.status_code == 201
    rejected = response.json()["rejected_gpus"]
    assert [(r["index"], r["error"]) for r in rejected] == [(0, "validation_failed")]
    assert {e["field"] for e in rejected[0]["errors"]} == {"uuid", "memory_total_mib"}
    assert list(GPU.objects.values_list("uuid", flat=True)) == [H100["uuid"]]


def test_enrolled_node_fits_its_columns(alice):
    """hostname may be 255 characters; the node's name column holds 100 (a 500 on PostgreSQL)."""
    response = enroll(alice, hostname="h" * 200)

    assert response.status_code == 201
    node = Node.objects.get(pk=response.json()["node_id"])
    assert len(node.name) <= Node._meta.get_field("name").max_length


@pytest.mark.parametrize(
    "fields",
    [
        {"enrollment_code": "enr_\ud800"},
        {"hostname": "rig-\ud800"},
        {"gpus": [{**H100, "name": "NVIDIA \ud800"}]},
    ],
    ids=["code", "hostname", "gpu-name"],
)
def test_enroll_with_a_lone_surrogate_is_refused_not_a_server_error(alice, fields):
    response = enroll(alice, **fields)

    # Not storable text: refused as a whole (or the field as invalid), never a 500.
    assert response.status_code == 400
    assert response.json()["error"] in {"invalid_json", "validation_failed"}
    assert not Node.objects.exists()
    assert EnrollmentCode.objects.get().used_at is None


# --- telemetry: acceptance and idempotency ----------------------------------------------------


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


# --- telemetry: authentication, body, limits --------------------------------------------------


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


# --- telemetry: per-sample verdicts -----------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, error",
    [
        ({"utilization_gpu_pct": 101}, "out_of_range"),
        ({"utilization_gpu_pct": -1}, "out_of_range"),
        ({"utilization_gpu_pct": 100.0001}, "out_of_range"),
        ({"temperature_c": 500}, "out_of_range"),
        ({"power_w": -5}, "out_of_range"),
        ({"memory_used_mib": -1}, "out_of_range"),
        ({"memory_total_mib": 0, "memory_used_mib": 0}, "out_of_range"),
        ({"memory_used_mib": 81560}, "memory_used_exceeds_total"),
        ({"ts": "HOURS_AGO_25"}, "timestamp_out_of_window"),
        ({"ts": "MINUTES_AHEAD_10"}, "timestamp_out_of_window"),
        ({"gpu_uuid": nvml_uuid("nobody-has-this")}, "unknown_gpu"),
        ({"ts": "2024-05-01T10:00:00"}, "validation_failed"),  # no offset
        ({"memory_used_mib": "40000"}, "validation_failed"),
        ({"gpu_uuid": None}, "validation_failed"),
        ({"job_id": "j" * 129}, "validation_failed"),
    ],
)
def test_each_bad_sample_is_rejected_with_its_code(agent, overrides, error):
    now = timezone.now()
    times = {
        "HOURS_AGO_25": iso(now - timedelta(hours=25)),
        "MINUTES_AHEAD_10": iso(now + timedelta(minutes=10)),
    }
    overrides = {k: times.get(v, v) if isinstance(v, str) else v for k, v in overrides.items()}
    good = sample(H100["uuid"], now - timedelta(seconds=20))
    bad = sample(H100["uuid"], now - timedelta(seconds=10), **overrides)
    response = agent.send(batch([good, bad, sample(H100["uuid"], now)]))

    assert response.status_code == 202
    assert response.json()["accepted"] == 2
    assert response.json()["rejected"] == [{"index": 1, "error": error}]


@pytest.mark.parametrize(
    "offset", [timedelta(hours=-23, minutes=-55), timedelta(minutes=4), timedelta(0)]
)
def test_samples_inside_the_time_window_are_accepted(agent, offset):
    response = agent.send(batch([sample(H100["uuid"], timezone.now() + offset)]))
    assert response.json()["rejected"] == []
    assert response.json()["accepted"] == 1


@pytest.mark.parametrize(
    "reading",
    [
        {"utilization_gpu_pct": 0, "memory_used_mib": 0},
        {"utilization_gpu_pct": 100, "memory_used_mib": 81559},
        {"temperature_c": -40, "power_w": 0},
        {"temperature_c": 150, "power_w": 1050},  # an H100's 700 W board power x 1.5
    ],
)
def test_readings_at_the_edges_of_their_range_are_accepted(agent, reading):
    response = agent.send(batch([sample(H100["uuid"], **reading)]))
    assert response.json()["rejected"] == []


def test_power_at_the_edge_of_its_range_is_accepted_for_a_model_without_a_board_power(agent):
    """Only the range bounds the power of a model the catalog does not rate."""
    unrated = gpu(nvml_uuid("unrated"), name="Acme Tensor X1", memory_total_mib=16384)
    reading = sample(
        unrated["uuid"], memory_total_mib=16384, memory_used_mib=0, temperature_c=150, power_w=5000
    )
    response = agent.send(batch([reading], gpus=[unrated]))

    assert "rejected_gpus" not in response.json()
    assert response.json()["rejected"] == []
    assert GPU.objects.get(uuid=unrated["uuid"]).unrated


@pytest.mark.parametrize("field", ["utilization_gpu_pct", "temperature_c", "power_w"])
@pytest.mark.parametrize("literal", ["1e400", "-1e400"])
def test_infinite_readings_are_out_of_range(agent, field, literal):
    body = batch([sample(H100["uuid"], **{field: "__INFINITY__"})])
    raw = json.dumps(body).replace('"__INFINITY__"', literal)
    response = agent.send(raw, raw=True)

    assert response.status_code == 202
    assert response.json()["rejected"] == [{"index": 0, "error": "out_of_range"}]


@pytest.mark.parametrize("item", [[1, 2], "sample", 7, None])
def test_a_sample_that_is_not_an_object_is_validation_failed(agent, item):
    response = agent.send(batch([item, sample(H100["uuid"])]))

    assert response.status_code == 202
    assert response.json()["accepted"] == 1
    assert response.json()["rejected"] == [{"index": 0, "error": "validation_failed"}]


@pytest.mark.parametrize("missing", ["gpu_uuid", "ts", "memory_used_mib", "memory_total_mib"])
def test_a_sample_missing_a_required_field_is_validation_failed(agent, missing):
    item = sample(H100["uuid"])
    del item[missing]
    response = agent.send(batch([item]))

    assert response.status_code == 202
    assert response.json() == {
        "batch_id": response.json()["batch_id"],
        "accepted": 0,
        "rejected": [{"index": 0, "error": "validation_failed"}],
    }


@pytest.mark.parametrize("gpu_uuid", [["GPU-1"], {"uuid": "GPU-1"}])
def test_a_sample_whose_gpu_uuid_is_not_a_string_is_validation_failed(agent, gpu_uuid):
    response = agent.send(batch([sample(gpu_uuid), sample(H100["uuid"])]))

    assert response.status_code == 202, response.content[:300]
    assert response.json()["accepted"] == 1
    assert response.json()["rejected"] == [{"index": 0, "error": "validation_failed"}]


def test_optional_readings_may_be_null_or_absent(agent, django_capture_on_commit_callbacks):
    now = timezone.now()
    null_util = sample(H100["uuid"], now - timedelta(seconds=2), utilization_gpu_pct=None)
    bare = sample(H100["uuid"], now - timedelta(seconds=1))
    for key in ("temperature_c", "power_w"):
        del bare[key]
    body = batch([null_util, bare])
    assert send_and_ingest(agent, body, django_capture_on_commit_callbacks)["accepted"] == 2

    stored = list(Sample.objects.order_by("ts"))
    assert stored[0].utilization_gpu_pct is None
    assert (stored[1].temperature_c, stored[1].power_w) == (None, None)


def test_sample_for_another_nodes_gpu_is_refused_and_flags_the_reporting_node(alice, bob, agent):
    intruder = Agent(enroll(bob, hostname="bobs-box"))
    response = intruder.send(batch([sample(H100["uuid"])]))

    assert response.status_code == 202
    assert response.json()["rejected"] == [{"index": 0, "error": "gpu_owned_by_other_node"}]
    assert not GpuFlag.objects.exists()  # the owner's GPU keeps earning
    flag = NodeFlag.objects.get()
    assert (flag.node_id, flag.reason) == (intruder.node_id, NodeFlag.Reason.FOREIGN_GPU)
    assert (flag.gpu_uuids, flag.reports, flag.cleared_at) == ([H100["uuid"]], 1, None)
    first_seen = flag.last_seen_at

    # Reported again: the same open flag, counted and seen again.
    again = intruder.send(batch([sample(H100["uuid"])]))
    assert again.json()["rejected"] == [{"index": 0, "error": "gpu_owned_by_other_node"}]
    flag.refresh_from_db()
    assert NodeFlag.objects.count() == 1 and flag.last_seen_at >= first_seen
    assert (flag.gpu_uuids, flag.reports) == ([H100["uuid"]], 2)
    assert not GpuFlag.objects.exists()


def test_inventory_naming_another_nodes_gpu_is_rejected_and_flags_the_reporting_node(bob, agent):
    intruder = Agent(enroll(bob, hostname="bobs-box"))
    response = intruder.send(batch([sample(H100["uuid"])], gpus=[H100]))

    assert response.status_code == 202
    body = response.json()
    assert body["rejected"] == [{"index": 0, "error": "gpu_owned_by_other_node"}]
    assert body["rejected_gpus"] == [{"index": 0, "error": "gpu_owned_by_other_node"}]
    assert GPU.objects.get(uuid=H100["uuid"]).node_id == agent.node_id
    assert not GpuFlag.objects.exists()
    # One report naming it, however many times within it: one flag, counted once.
    flag = NodeFlag.objects.get(node_id=intruder.node_id)
    assert (flag.reason, flag.gpu_uuids, flag.reports) == (
        NodeFlag.Reason.FOREIGN_GPU,
        [H100["uuid"]],
        1,
    )


def test_admin_sees_the_flag_of_a_node_reporting_another_nodes_gpu(admin_client, bob, agent):
    Agent(enroll(bob, hostname="bobs-box")).send(batch([sample(H100["uuid"])]))
    flag = NodeFlag.objects.get()

    listing = admin_client.get("/admin/contributors/nodeflag/")
    assert listing.status_code == 200
    assert f"/admin/contributors/nodeflag/{flag.pk}/change/" in listing.content.decode()
    page = admin_client.get(f"/admin/contributors/nodeflag/{flag.pk}/change/")
    assert page.status_code == 200
    assert H100["uuid"] in page.content.decode()
    assert not GpuFlag.objects.exists()


def test_inventory_update_registers_new_gpus_before_reading_samples(agent):
    new = gpu(nvml_uuid("added-later"), name="NVIDIA L40S", memory_total_mib=46068)
    response = agent.send(batch([sample(new["uuid"], memory_total_mib=46068)], gpus=[new]))

    assert response.status_code == 202
    assert response.json() == {
        "batch_id": response.json()["batch_id"],
        "accepted": 1,
        "rejected": [],
    }
    assert GPU.objects.get(uuid=new["uuid"]).node_id == agent.node_id


def test_inventory_update_changes_a_gpus_reported_fields(agent):
    changed = {**H100, "name": "NVIDIA H100 PCIe", "driver_version": "560.28.03"}
    response = agent.send(batch([], gpus=[changed]))

    assert response.status_code == 202 and "rejected_gpus" not in response.json()
    stored = GPU.objects.get(uuid=H100["uuid"])
    assert (stored.name, stored.driver_version, stored.node_id) == (
        "NVIDIA H100 PCIe",
        "560.28.03",
        agent.node_id,
    )
    assert GPU.objects.count() == 1


def test_inventory_update_with_a_smaller_total_lowers_the_commitment(agent):
    GPU.objects.filter(uuid=H100["uuid"]).update(committed_memory_mib=80000)
    response = agent.send(batch([], gpus=[{**H100, "memory_total_mib": 79000}]))

    assert response.status_code == 202
    stored = GPU.objects.get(uuid=H100["uuid"])
    assert (stored.memory_total_mib, stored.committed_memory_mib) == (79000, 79000)


# --- telemetry: what the worker stores --------------------------------------------------------


def test_stored_samples_match_what_was_sent(agent, django_capture_on_commit_callbacks):
    now = timezone.now().replace(microsecond=123456)
    sent = [
        sample(H100["uuid"], now - timedelta(seconds=20), job_id="job-7"),
        sample(
            H100["uuid"],
            now - timedelta(seconds=10),
            utilization_gpu_pct=0,
            memory_used_mib=0,
            temperature_c=-3.5,
            power_w=0,
        ),
        sample(
            H100["uuid"],
            now,
            utilization_gpu_pct=100,
            memory_used_mib=81559,
            temperature_c=88.25,
            power_w=700.5,
        ),
    ]
    send_and_ingest(agent, batch(sent), django_capture_on_commit_callbacks)

    stored = [
        {
            "gpu_uuid": s.gpu.uuid,
            "ts": iso(s.ts),
            "utilization_gpu_pct": s.utilization_gpu_pct,
            "memory_used_mib": s.memory_used_mib,
            "memory_total_mib": s.memory_total_mib,
            "temperature_c": s.temperature_c,
            "power_w": s.power_w,
            "job_id": s.job_id,
        }
        for s in Sample.objects.select_related("gpu").order_by("ts")
    ]
    assert stored == [{"job_id": "", **s} for s in sent]


def test_duplicate_samples_within_a_batch_are_stored_once(
    agent, django_capture_on_commit_callbacks
):
    moment = timezone.now() - timedelta(seconds=30)
    same_instant_other_offset = moment.astimezone(timezone.get_fixed_timezone(120)).isoformat()
    body = batch(
        [
            sample(H100["uuid"], moment),
            sample(H100["uuid"], moment),
            sample(H100["uuid"], moment, ts=same_instant_other_offset),
        ]
    )
    answer = send_and_ingest(agent, body, django_capture_on_commit_callbacks)

    assert answer["rejected"] == []
    assert Sample.objects.count() == 1


def test_duplicate_samples_across_batches_are_accepted_and_stored_once(
    agent, django_capture_on_commit_callbacks
):
    moment = timezone.now() - timedelta(seconds=30)
    first = send_and_ingest(
        agent, batch([sample(H100["uuid"], moment)]), django_capture_on_commit_callbacks
    )
    second = send_and_ingest(
        agent,
        batch([sample(H100["uuid"], moment, utilization_gpu_pct=1), sample(H100["uuid"])]),
        django_capture_on_commit_callbacks,
    )

    assert (first["rejected"], second["rejected"]) == ([], [])
    assert Sample.objects.count() == 2
    assert Sample.objects.get(ts=moment).utilization_gpu_pct == 87.5  # the first one stays


def test_mig_instance_reported_later_links_to_its_parent(
    alice, agent, django_capture_on_commit_callbacks
):
    mig = {
        "uuid": "MIG-11111111-0000-0000-0000-000000000001",
        "name": "NVIDIA H100 80GB HBM3 MIG 1g.10gb",
        "memory_total_mib": 9856,
        "mig_parent_uuid": H100["uuid"],
    }
    body = batch(
        [sample(mig["uuid"], utilization_gpu_pct=None, memory_total_mib=9856, memory_used_mib=10)],
        gpus=[mig],
    )
    assert send_and_ingest(agent, body, django_capture_on_commit_callbacks)["accepted"] == 1

    assert GPU.objects.get(uuid=mig["uuid"]).mig_parent.uuid == H100["uuid"]
    listed = {g["uuid"]: g for g in signed_in(ALICE).get(MY_GPUS).json()}
    assert listed[mig["uuid"]]["mig_parent_uuid"] == H100["uuid"]
    assert listed[mig["uuid"]]["utilization_gpu_pct"] is None
    assert listed[H100["uuid"]]["mig_parent_uuid"] is None


@pytest.mark.parametrize("job_id", ["job-\ud800", "job-\x00"])
def test_a_job_id_the_database_cannot_store_does_not_poison_the_batch(
    agent, django_capture_on_commit_callbacks, job_id
):
    now = timezone.now()
    body = batch(
        [sample(H100["uuid"], now - timedelta(seconds=1), job_id=job_id), sample(H100["uuid"], now)]
    )
    with django_capture_on_commit_callbacks(execute=False):
        response = agent.send(body)
    if response.status_code == 400:  # refused at the door: nothing stored to fail later
        assert response.json()["error"] in {"invalid_json", "validation_failed"}
        assert not TelemetryBatch.objects.exists()
        return
    assert response.status_code == 202

    accepted = response.json()["accepted"]
    ingest.ingest(agent.batch_row(body["batch_id"]).pk)  # must not raise
    assert agent.batch_row(body["batch_id"]).status == TelemetryBatch.Status.PROCESSED
    assert Sample.objects.count() == accepted >= 1


# --- live state: /api/v1/me/gpus --------------------------------------------------------------


def test_live_state_keeps_the_newest_sample_when_batches_arrive_out_of_order(
    agent, django_capture_on_commit_callbacks
):
    now = timezone.now()
    newer = batch([sample(H100["uuid"], now, utilization_gpu_pct=91, memory_used_mib=50000)])
    older = batch(
        [sample(H100["uuid"], now - timedelta(minutes=5), utilization_gpu_pct=3, job_id="old")]
    )
    with django_capture_on_commit_callbacks(execute=False):
        assert agent.send(older).status_code == 202
        assert agent.send(newer).status_code == 202
    ingest.ingest(agent.batch_row(newer["batch_id"]).pk)
    ingest.ingest(agent.batch_row(older["batch_id"]).pk)

    (listed,) = signed_in(ALICE).get(MY_GPUS).json()
    assert listed["last_sample_at"] == iso(now)
    assert (listed["utilization_gpu_pct"], listed["memory_used_mib"]) == (91, 50000)
    assert listed["job_id"] is None
    assert listed["status"] == "online"
    assert Sample.objects.count() == 2


def test_my_gpus_lists_only_my_own_with_their_live_state(
    alice, bob, agent, django_capture_on_commit_callbacks
):
    bobs = gpu(nvml_uuid("bobs"), name="NVIDIA GeForce RTX 4090", memory_total_mib=24564)
    Agent(enroll(bob, [bobs], hostname="bobs-box"))
    now = timezone.now()
    send_and_ingest(
        agent,
        batch([sample(H100["uuid"], now, job_id="job-1", temperature_c=70.5)]),
        django_capture_on_commit_callbacks,
    )

    listed = signed_in(ALICE).get(MY_GPUS).json()
    assert listed == [
        {
            "uuid": H100["uuid"],
            "name": H100["name"],
            "node": {"id": agent.node_id, "name": "rig-1"},
            "status": "online",
            "last_seen": listed[0]["last_seen"],
            "last_sample_at": iso(now),
            "utilization_gpu_pct": 87.5,
            "memory_used_mib": 40000,
            "memory_total_mib": 81559,
            "committed_memory_mib": 81559,
            "temperature_c": 70.5,
            "power_w": 512.25,
            "job_id": "job-1",
            "enabled": True,
            "mig_parent_uuid": None,
        }
    ]
    assert [g["uuid"] for g in signed_in(BOB).get(MY_GPUS).json()] == [bobs["uuid"]]


def test_my_gpus_status_is_online_offline_or_disabled(alice, django_capture_on_commit_callbacks):
    a, b, c, d = (nvml_uuid(label) for label in ("a", "b", "c", "d"))
    agent = Agent(enroll(alice, [gpu(a), gpu(b), gpu(c), gpu(d)]))
    send_and_ingest(
        agent,
        batch([sample(a), sample(b), sample(c)]),
        django_capture_on_commit_callbacks,
    )
    # b was last seen just over 3 report intervals (3 x 30 s) ago; c was disabled by its owner.
    GPU.objects.filter(uuid=b).update(last_seen_at=timezone.now() - timedelta(seconds=95))
    GPU.objects.filter(uuid=c).update(enabled=False)

    statuses = {g["uuid"]: g["status"] for g in signed_in(ALICE).get(MY_GPUS).json()}
    assert statuses == {
        a: "online",
        b: "offline",
        c: "disabled",
        d: "offline",  # never reported
    }


def test_my_gpus_needs_a_signed_in_contributor(agent):
    response = Client().get(MY_GPUS)
    assert response.status_code in (401, 403)
    assert response.json()["error"] == "not_authenticated"
    # A node token is not a session.
    with_token = Client().get(MY_GPUS, headers=agent.auth())
    assert with_token.status_code in (401, 403)


# --- config ---------------------------------------------------------------------------------


def test_config_lists_the_nodes_gpus_with_defaults(alice):
    small = gpu(nvml_uuid("small"), name="NVIDIA GeForce RTX 4090", memory_total_mib=24564)
    agent = Agent(enroll(alice, [H100, small]))
    response = agent.config()

    assert response.status_code == 200
    assert response.json() == {
        "node_id": agent.node_id,
        "sample_interval_s": 10,
        "report_interval_s": 30,
        "gpus": [
            {"uuid": H100["uuid"], "committed_memory_mib": 81559, "enabled": True},
            {"uuid": small["uuid"], "committed_memory_mib": 24564, "enabled": True},
        ],
    }


def test_config_reflects_the_owners_choices(agent):
    GPU.objects.filter(uuid=H100["uuid"]).update(committed_memory_mib=40000)
    assert agent.config().json()["gpus"] == [
        {"uuid": H100["uuid"], "committed_memory_mib": 40000, "enabled": True}
    ]

    GPU.objects.filter(uuid=H100["uuid"]).update(enabled=False)
    assert agent.config().json()["gpus"] == [
        {"uuid": H100["uuid"], "committed_memory_mib": 40000, "enabled": False}
    ]


def test_config_follows_the_intervals_setting(agent, settings):
    settings.AGENT_SAMPLE_INTERVAL_S = 5
    settings.AGENT_REPORT_INTERVAL_S = 15
    body = agent.config().json()
    assert (body["sample_interval_s"], body["report_interval_s"]) == (5, 15)


def test_config_needs_a_valid_token(agent):
    assert Client().get(CONFIG).json()["error"] == "invalid_token"
    assert Client().get(CONFIG).status_code == 401
    agent.node.revoke()
    response = agent.config()
    assert (response.status_code, response.json()["error"]) == (403, "token_revoked")


# --- scheduler jobs --------------------------------------------------------------------------


def post_job(token: str | None, body: dict):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return Client().post(JOBS, body, content_type="application/json", headers=headers)


def job(**overrides) -> dict:
    body = {
        "job_id": "train-42",
        "gpu_uuid": H100["uuid"],
        "kind": "training",
        "started_at": "2025-01-01T10:00:00Z",
        "ended_at": None,
    }
    body.update(overrides)
    return body


def test_scheduler_records_a_job_then_its_end(agent):
    token = scheduler_token()
    created = post_job(token, job())

    assert created.status_code == 201
    assert created.json() == {
        "job_id": "train-42",
        "gpu_uuid": H100["uuid"],
        "kind": "training",
        "started_at": "2025-01-01T10:00:00Z",
        "ended_at": None,
    }
    # The same start spelled in another offset is the same job.
    ended = post_job(
        token, job(started_at="2025-01-01T12:00:00+02:00", ended_at="2025-01-01T11:30:00Z")
    )
    assert ended.status_code == 200
    assert ended.json()["ended_at"] == "2025-01-01T11:30:00Z"
    stored = Job.objects.get()
    assert stored.ended_at == datetime(2025, 1, 1, 11, 30, tzinfo=UTC)
    assert stored.gpu.uuid == H100["uuid"]


def test_scheduler_job_on_a_mig_instance_is_recorded_for_it(alice):
    mig = {
        **gpu(nvml_uuid("child", "MIG")),
        "name": "NVIDIA H100 80GB HBM3 MIG 1g.10gb",
        "memory_total_mib": 9856,
        "mig_parent_uuid": H100["uuid"],
    }
    Agent(enroll(alice, [H100, mig]))
    response = post_job(scheduler_token(), job(gpu_uuid=mig["uuid"], kind="inference"))

    assert response.status_code == 201
    assert Job.objects.get().gpu.mig_parent.uuid == H100["uuid"]


def test_scheduler_job_for_an_unknown_gpu_is_unknown_gpu(agent):
    response = post_job(scheduler_token(), job(gpu_uuid=nvml_uuid("not-registered")))
    assert response.status_code == 400
    assert response.json()["error"] == "unknown_gpu"
    assert not Job.objects.exists()


def test_scheduler_needs_a_scheduler_token(agent):
    assert post_job(None, job()).status_code == 401
    assert post_job(None, job()).json()["error"] == "invalid_token"
    node_token = post_job(agent.token, job())
    assert (node_token.status_code, node_token.json()["error"]) == (401, "invalid_token")
    forged = post_job("oms_0123456789ab_forged", job())
    assert forged.status_code == 401
    assert not Job.objects.exists()


def test_a_revoked_scheduler_token_is_refused(agent):
    from contributors.models import ServiceToken

    token = scheduler_token()
    ServiceToken.objects.update(revoked_at=timezone.now())
    assert post_job(token, job()).status_code == 401


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"kind": "mining"}, "kind"),
        ({"kind": None}, "kind"),
        ({"job_id": ""}, "job_id"),
        ({"job_id": "j" * 129}, "job_id"),
        ({"gpu_uuid": 5}, "gpu_uuid"),
        ({"started_at": "2025-01-01 10:00"}, "started_at"),
        ({"ended_at": "2025-01-01T09:59:59Z"}, "ended_at"),  # before it started
        ({"ended_at": "soon"}, "ended_at"),
    ],
)
def test_scheduler_job_with_bad_fields_is_validation_failed(agent, overrides, field):
    response = post_job(scheduler_token(), job(**overrides))

    assert response.status_code == 400
    assert response.json()["error"] == "validation_failed"
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert not Job.objects.exists()


def test_same_job_id_on_another_gpu_is_job_conflict(alice, agent):
    other = nvml_uuid("other")
    Agent(enroll(alice, [gpu(other)], hostname="rig-2"))
    token = scheduler_token()
    assert post_job(token, job()).status_code == 201

    response = post_job(token, job(gpu_uuid=other, ended_at="2025-01-01T11:00:00Z"))
    assert response.status_code == 409
    assert response.json()["error"] == "job_conflict"
    stored = Job.objects.get()
    assert (stored.gpu.uuid, stored.ended_at) == (H100["uuid"], None)


@pytest.mark.parametrize(
    "field, value",
    [
        ("started_at", "0001-01-01T00:00:00+01:00"),
        ("started_at", "9999-12-31T23:59:59-01:00"),
    ],
)
def test_scheduler_job_with_an_unrepresentable_time_is_refused_not_a_server_error(
    agent, field, value
):
    response = post_job(scheduler_token(), job(**{field: value}))
    assert response.status_code == 400
    assert response.json()["error"] == "validation_failed"


@pytest.mark.parametrize("sent_at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_telemetry_with_an_unrepresentable_sent_at_is_refused_not_a_server_error(agent, sent_at):
    response = agent.send(batch([sample(H100["uuid"])], sent_at=sent_at))
    assert response.status_code == 400
    assert response.json()["error"] == "validation_failed"


def test_mig_links_are_one_level_never_a_chain_or_a_cycle(alice):
    """An instance's work counts for its parent, and a held-out parent holds it out too:
    a nested or circular link would let an instance earn past that."""
    a, b, c, p = (nvml_uuid(label) for label in ("A", "B", "C", "P"))
    p1 = nvml_uuid("P1", "MIG")
    inventory = [
        {"uuid": a, "name": "x", "memory_total_mib": 1000, "mig_parent_uuid": b},
        {"uuid": b, "name": "x", "memory_total_mib": 1000, "mig_parent_uuid": c},
        {"uuid": c, "name": "x", "memory_total_mib": 1000, "mig_parent_uuid": a},
        {"uuid": p, "name": "x", "memory_total_mib": 1000},
        {"uuid": p1, "name": "x", "memory_total_mib": 500, "mig_parent_uuid": p},
    ]
    assert enroll(alice, inventory).status_code == 201

    links = dict(
        GPU.objects.filter(mig_parent__isnull=False).values_list("uuid", "mig_parent__uuid")
    )
    assert links == {p1: p}
    assert not GPU.objects.filter(mig_parent__mig_parent__isnull=False).exists()
