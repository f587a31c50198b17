"""Telemetry through the real HTTP API, as fault tests post it: nodes enrolled through
POST /api/v1/agent/enroll, batches posted with their real tokens, and the check that every
sample accepted was stored exactly once."""

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import F
from django.test import Client
from django.utils import timezone

from contributors.models import Contributor, EnrollmentCode, Sample, TelemetryBatch

ENROLL = "/api/v1/agent/enroll"
TELEMETRY = "/api/v1/agent/telemetry"
PENDING = TelemetryBatch.Status.PENDING
PROCESSED = TelemetryBatch.Status.PROCESSED


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class EnrolledNode:
    """A node enrolled through POST /api/v1/agent/enroll, posting with its real token."""

    node_id: int
    token: str
    gpu_uuids: list[str]
    client: Client = field(default_factory=Client)
    sent: set = field(default_factory=set)  # (gpu uuid, ts) of every accepted sample

    @classmethod
    def enroll(cls, gpus: int = 2) -> "EnrolledNode":
        owner = Contributor.objects.create(username=f"resilience-{uuid.uuid4().hex[:12]}")
        _, code = EnrollmentCode.issue(owner)
        uuids = [f"GPU-{uuid.uuid4()}" for _ in range(gpus)]
        response = Client().post(
            ENROLL,
            {
                "enrollment_code": code,
                "hostname": "rig-resilience",
                "agent_version": "test",
                "gpus": [
                    {"uuid": u, "name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559}
                    for u in uuids
                ],
            },
            content_type="application/json",
        )
        assert response.status_code == 201, response.content
        body = response.json()
        return cls(body["node_id"], body["node_token"], uuids)

    @staticmethod
    def samples(gpu_uuid: str, times: list[datetime]) -> list[dict]:
        return [
            {
                "gpu_uuid": gpu_uuid,
                "ts": iso(ts),
                "utilization_gpu_pct": 50 + i % 50,
                "memory_used_mib": 1000 + i,
                "memory_total_mib": 81559,
                "temperature_c": 60.0,
                "power_w": 300.5,
            }
            for i, ts in enumerate(times)
        ]

    def post(self, body: dict):
        response = self.client.post(
            TELEMETRY,
            json.dumps(body),
            content_type="application/json",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        if response.status_code in (200, 202):
            for item in body["samples"]:
                self.sent.add((item["gpu_uuid"], datetime.fromisoformat(item["ts"])))
        return response

    def batch(self, times: list[datetime], batch_id: str | None = None) -> dict:
        return {
            "batch_id": batch_id or str(uuid.uuid4()),
            "sent_at": iso(timezone.now()),
            "samples": [s for g in self.gpu_uuids for s in self.samples(g, times)],
        }

    def batches(self):
        return TelemetryBatch.objects.filter(node_id=self.node_id)

    def stored(self) -> set:
        return {
            (gpu_uuid, ts.astimezone(UTC))
            for gpu_uuid, ts in Sample.objects.filter(gpu__node_id=self.node_id).values_list(
                "gpu__uuid", "ts"
            )
        }

    def stored_count(self) -> int:
        return Sample.objects.filter(gpu__node_id=self.node_id).count()


def post_overlapping_batches(node: EnrolledNode, count: int, per_batch: int, overlap: int):
    """`count` batches of `per_batch` readings per GPU, each repeating the last `overlap`
    readings of the one before (an agent resending under a new batch id), plus one exact
    replay of a batch id. Returns the bodies posted."""
    start = timezone.now().replace(microsecond=123457) - timedelta(hours=1)
    step = per_batch - overlap
    bodies, answers = [], []
    for k in range(count):
        times = [start + timedelta(seconds=k * step + i) for i in range(per_batch)]
        body = node.batch(times)
        response = node.post(body)
        assert response.status_code == 202, response.content
        assert response.json()["accepted"] == len(body["samples"]), response.content
        bodies.append(body)
        answers.append(response.json())
    replay = node.post(bodies[count // 2])
    assert (replay.status_code, replay.json()) == (200, answers[count // 2])
    return bodies


def backdate_pending(node: EnrolledNode) -> list[int]:
    """Make the node's pending batches older than the sweep delay, as if left there long."""
    node.batches().filter(status=PENDING).update(
        received_at=F("received_at") - timedelta(seconds=settings.INGEST_SWEEP_AFTER_S + 5)
    )
    return sorted(node.batches().filter(status=PENDING).values_list("pk", flat=True))


def assert_every_sample_stored_once(node: EnrolledNode) -> None:
    assert node.batches().filter(status=PENDING).count() == 0
    assert node.batches().exclude(status=PROCESSED).count() == 0, list(
        node.batches().exclude(status=PROCESSED).values("pk", "status", "error")
    )
    stored = node.stored()
    assert stored == node.sent, (
        f"{len(node.sent - stored)} samples missing, {len(stored - node.sent)} unexpected"
    )
    assert node.stored_count() == len(node.sent)
