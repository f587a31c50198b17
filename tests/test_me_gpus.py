"""GET /api/v1/me/gpus: a signed-in contributor's own GPUs with their live state (the newest
sample, whatever order batches arrive in) and their status: online, offline or disabled.
"""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from contributors.models import GPU, Sample
from contributors.telemetry import store as ingest
from tests.support.agent_api import (
    H100,
    MY_GPUS,
    Agent,
    batch,
    enroll,
    gpu,
    iso,
    nvml_uuid,
    sample,
    send_and_ingest,
)
from tests.support.siwe import ALICE, BOB, signed_in_with_wallet

pytestmark = pytest.mark.django_db


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

    (listed,) = signed_in_with_wallet(ALICE).get(MY_GPUS).json()
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

    listed = signed_in_with_wallet(ALICE).get(MY_GPUS).json()
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
    assert [g["uuid"] for g in signed_in_with_wallet(BOB).get(MY_GPUS).json()] == [bobs["uuid"]]


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

    statuses = {g["uuid"]: g["status"] for g in signed_in_with_wallet(ALICE).get(MY_GPUS).json()}
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
