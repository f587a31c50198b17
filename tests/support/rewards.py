"""Rewards as a test earns them: rigs that enroll and report through the real agent API, jobs
the scheduler attests, a worker's ingest run in-process, an epoch settled, and what the
contributor reads back from /api/v1/me/rewards.

Amounts follow the default policy (DESIGN.md "Reward definitions"): 1 h epochs, 30 s max gap,
1,000 OMNIT compute pool and 250 OMNIT idle pool.
"""

import json
import uuid
from datetime import datetime, timedelta

from django.test import Client
from django.utils import timezone

from contributors.models import EnrollmentCode, ServiceToken, TelemetryBatch
from contributors.telemetry import store as ingest
from rewards import settlement
from rewards.models import Epoch
from tests.support.agent_api import iso, nvml_uuid
from tests.support.siwe import signed_in

OMNIT = 10**18
COMPUTE_POOL = 1_000 * OMNIT
IDLE_POOL = 250 * OMNIT

H100 = {"name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559}  # weight 3
RTX_4090 = {"name": "NVIDIA GeForce RTX 4090", "memory_total_mib": 24564}  # weight 0.53
# alice's GPUs a1..a3 (a1's MIG instance a1-0) and bob's b1, as NVML names them.
A1, A2, A3, B1 = (nvml_uuid(label) for label in ("a1", "a2", "a3", "b1"))
A1_MIG = nvml_uuid("a1-0", "MIG")


def epoch_start(hours_ago: int = 3) -> datetime:
    now = timezone.now()
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours_ago)


class Rig:
    """An enrolled node, as its agent sees it."""

    def __init__(self, owner, gpus: list[dict]):
        code = EnrollmentCode.issue(owner)[1]
        body = {"enrollment_code": code, "hostname": "rig", "agent_version": "0.1.0", "gpus": gpus}
        response = Client().post("/api/v1/agent/enroll", body, content_type="application/json")
        assert response.status_code == 201, response.content
        self.token = response.json()["node_token"]
        self.node_id = response.json()["node_id"]
        self.gpus = gpus

    def post(self, samples: list[dict]) -> dict:
        """Post one batch (at most 1,000 samples); the portal's answer."""
        body = {"batch_id": str(uuid.uuid4()), "sent_at": iso(timezone.now()), "samples": samples}
        response = Client().post(
            "/api/v1/agent/telemetry",
            json.dumps(body),
            content_type="application/json",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        assert response.status_code == 202, response.content
        return response.json()

    def report(self, samples: list[dict]) -> None:
        """Post samples in batches of up to 1,000, as an agent would."""
        for i in range(0, len(samples), 1000):
            answer = self.post(samples[i : i + 1000])
            assert not answer["rejected"], answer


def gpu(uuid_: str, model: dict, **extra) -> dict:
    return {"uuid": uuid_, **model, **extra}


def samples(
    uuid_: str,
    start: datetime,
    *,
    seconds: range = range(0, 3600, 10),
    util: float | None = 0.0,
    used: int = 0,
    total: int = 81559,
    job: str | None = None,
) -> list[dict]:
    """One sample every 10 s at `start + s` for each s in `seconds`."""
    return [
        {
            "gpu_uuid": uuid_,
            "ts": iso(start + timedelta(seconds=s)),
            "utilization_gpu_pct": util,
            "memory_used_mib": used,
            "memory_total_mib": total,
            "job_id": job,
        }
        for s in seconds
    ]


def attest(job_id: str, gpu_uuid: str, started_at: datetime, ended_at: datetime | None = None):
    """The scheduler reports a job (a new one, or the end of one it reported); its answer."""
    token = ServiceToken.issue("scheduler")[1]
    body = {
        "job_id": job_id,
        "gpu_uuid": gpu_uuid,
        "kind": "training",
        "started_at": iso(started_at),
        "ended_at": None if ended_at is None else iso(ended_at),
    }
    response = Client().post(
        "/api/v1/scheduler/jobs",
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code in (200, 201), response.content
    return response


def ingest_all() -> None:
    pending = TelemetryBatch.objects.filter(status=TelemetryBatch.Status.PENDING)
    for pk in pending.order_by("pk").values_list("pk", flat=True):
        ingest.ingest(pk)


def settle(start: datetime) -> Epoch:
    settled = settlement.settle_due(until=start + timedelta(hours=1))
    assert [e.start for e in settled] == [start]
    return settled[0]


def rewards_of(contributor, **params) -> dict:
    response = signed_in(contributor).get("/api/v1/me/rewards", params)
    assert response.status_code == 200, response.content
    return response.json()


def by_gpu(body: dict) -> dict:
    return {(e["gpu_uuid"], e["kind"]): e for e in body["entries"]}
