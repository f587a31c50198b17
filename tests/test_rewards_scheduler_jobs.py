"""POST /api/v1/scheduler/jobs: the scheduler attests the jobs that compute rewards are paid
for (DESIGN.md "Reward definitions"): a job and later its end, on a GPU or a MIG instance, with a
scheduler's service token only.
"""

from datetime import UTC, datetime

import pytest
from django.test import Client
from django.utils import timezone

from rewards.models import Job
from tests.support.agent_api import H100, JOBS, Agent, enroll, gpu, nvml_uuid, scheduler_token

pytestmark = pytest.mark.django_db


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
