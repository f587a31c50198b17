"""What a worker stores of an accepted telemetry batch: the samples as sent, each once however
often it was sent, MIG instances linked to their parent. The worker's function,
`ingest.ingest`, runs in-process on the stored batch.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from contributors.models import GPU, Sample, TelemetryBatch
from contributors.telemetry import store as ingest
from tests.support.agent_api import H100, MY_GPUS, batch, iso, sample, send_and_ingest
from tests.support.siwe import ALICE, signed_in_with_wallet

pytestmark = pytest.mark.django_db


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
    listed = {g["uuid"]: g for g in signed_in_with_wallet(ALICE).get(MY_GPUS).json()}
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
