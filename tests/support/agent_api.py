"""The agent API as a test drives it: enroll through HTTP, then post as the node's agent."""

import json
import uuid
from datetime import UTC, datetime, timedelta

from django.test import Client
from django.utils import timezone

from contributors.models import EnrollmentCode, Node

ENROLL = "/api/v1/agent/enroll"
TELEMETRY = "/api/v1/agent/telemetry"
CONFIG = "/api/v1/agent/config"
JOBS = "/api/v1/scheduler/jobs"


def nvml_uuid(label: str, kind: str = "GPU") -> str:
    """A uuid in NVML's form, the same for the same label."""
    return f"{kind}-{uuid.uuid5(uuid.NAMESPACE_URL, 'omnitensor-test/' + label)}"


def h100(label: str = "h100", **overrides) -> dict:
    """An H100 as nvidia-smi reports one (tests/data: 81559 MiB)."""
    return {
        "uuid": nvml_uuid(label),
        "name": "NVIDIA H100 80GB HBM3",
        "memory_total_mib": 81559,
        "driver_version": "590.48.01",
        **overrides,
    }


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def sample(gpu_uuid: str, at: datetime | None = None, /, **overrides) -> dict:
    return {
        "gpu_uuid": gpu_uuid,
        "ts": iso(at or timezone.now() - timedelta(seconds=5)),
        "utilization_gpu_pct": 87.5,
        "memory_used_mib": 40000,
        "memory_total_mib": 81559,
        "temperature_c": 61.0,
        "power_w": 512.25,
        **overrides,
    }


def batch(samples: list, **overrides) -> dict:
    return {
        "batch_id": str(uuid.uuid4()),
        "sent_at": iso(timezone.now()),
        "samples": samples,
        **overrides,
    }


def enroll(owner, gpus=(), client=None, **fields):
    body = {
        "enrollment_code": EnrollmentCode.issue(owner)[1],
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
        self.rejected_gpus = body.get("rejected_gpus", [])
        self.client = Client()

    @property
    def node(self) -> Node:
        return Node.objects.get(pk=self.node_id)

    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def send(self, body, raw: bool = False, **extra):
        data = body if raw else json.dumps(body)
        return self.client.post(
            TELEMETRY, data, content_type="application/json", headers=self.auth(), **extra
        )
