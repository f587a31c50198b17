"""Telemetry for the worker side's tests: one enrolled node with one A100, batches of
samples ten seconds apart, and batches accepted through the API with their enqueue captured."""

import json
import uuid
from datetime import timedelta

from django.test import Client
from django.utils import timezone

from contributors.models import EnrollmentCode, TelemetryBatch
from contributors.signin import contributor_for_sign_in
from tests.support.agent_api import iso
from tests.support.siwe import ALICE

GPU_UUID = "GPU-0c0ffee0-0000-4000-8000-000000000001"


class Agent:
    """alice's node with one A100, enrolled through the API; it posts telemetry as its agent."""

    def __init__(self):
        owner = contributor_for_sign_in(ALICE.address)
        code = EnrollmentCode.issue(owner)[1]
        body = {
            "enrollment_code": code,
            "hostname": "rig-1",
            "agent_version": "0.1.0",
            "gpus": [
                {"uuid": GPU_UUID, "name": "NVIDIA A100-SXM4-40GB", "memory_total_mib": 40960}
            ],
        }
        response = Client().post("/api/v1/agent/enroll", body, content_type="application/json")
        assert response.status_code == 201, response.content
        self.node_id = response.json()["node_id"]
        self.token = response.json()["node_token"]

    def send(self, body: dict, client: Client | None = None):
        return (client or Client()).post(
            "/api/v1/agent/telemetry",
            json.dumps(body),
            content_type="application/json",
            headers={"Authorization": f"Bearer {self.token}"},
        )

    def batch_row(self, body: dict) -> TelemetryBatch:
        return TelemetryBatch.objects.get(node_id=self.node_id, batch_id=body["batch_id"])


def batch(count: int, start=None) -> dict:
    start = start or timezone.now() - timedelta(minutes=10)
    samples = [
        {
            "gpu_uuid": GPU_UUID,
            "ts": iso(start + timedelta(seconds=10 * i)),
            "utilization_gpu_pct": float(i % 101),
            "memory_used_mib": 1000 + i,
            "memory_total_mib": 40960,
        }
        for i in range(count)
    ]
    return {"batch_id": str(uuid.uuid4()), "sent_at": iso(timezone.now()), "samples": samples}


def accepted(agent: Agent, body: dict, capture) -> TelemetryBatch:
    with capture(execute=False) as callbacks:
        response = agent.send(body)
    assert response.status_code == 202, response.content
    assert len(callbacks) == 1
    return agent.batch_row(body)


def age(row: TelemetryBatch, seconds: float) -> None:
    TelemetryBatch.objects.filter(pk=row.pk).update(
        received_at=timezone.now() - timedelta(seconds=seconds)
    )
