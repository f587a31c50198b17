"""The agent API as a test drives it: enroll through HTTP, then post as the node's agent."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from io import StringIO

from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from contributors.models import EnrollmentCode, Node, TelemetryBatch
from contributors.telemetry import store as ingest

ENROLL = "/api/v1/agent/enroll"
TELEMETRY = "/api/v1/agent/telemetry"
CONFIG = "/api/v1/agent/config"
JOBS = "/api/v1/scheduler/jobs"
MY_GPUS = "/api/v1/me/gpus"

# The GPU of the agent API's tests (the `agent` fixture's), every field an agent may report.
H100 = {
    "uuid": "GPU-11111111-2222-3333-4444-555555555555",
    "name": "NVIDIA H100 80GB HBM3",
    "memory_total_mib": 81559,
    "driver_version": "550.54.15",
    "pci_bus_id": "00000000:17:00.0",
}


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


def gpu(uuid_: str, **overrides) -> dict:
    """Another GPU like `H100`, with a uuid of its own and no PCI bus id."""
    return {**H100, "uuid": uuid_, "pci_bus_id": "", **overrides}


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

    def config(self):
        return self.client.get(CONFIG, headers=self.auth())

    def batch_row(self, batch_id: str) -> TelemetryBatch:
        return TelemetryBatch.objects.get(node_id=self.node_id, batch_id=batch_id)


def send_and_ingest(agent: Agent, body: dict, capture) -> dict:
    """Post a batch, check that exactly one ingest is enqueued, and run it."""
    with capture(execute=False) as callbacks:
        response = agent.send(body)
    assert response.status_code == 202, response.content
    assert len(callbacks) == 1
    assert ingest.ingest(agent.batch_row(body["batch_id"]).pk) == response.json()["accepted"]
    return response.json()


def scheduler_token() -> str:
    """A new service token of the scheduler scope, as an operator creates one."""
    out = StringIO()
    call_command("create_service_token", "--scope", "scheduler", stdout=out)
    return out.getvalue().split()[-1]
