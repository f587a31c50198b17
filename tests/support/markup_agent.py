"""A machine whose agent writes markup into every name it chooses, through the real APIs.

Hostnames, GPU names, driver and agent versions and job ids are text that agents (and, for
jobs, the scheduler) chose; pages, figures, the admin and the CSV export must show them as text.
The machine enrolls and reports over HTTP, a worker's function stores its batches, and
`settle_epochs` settles the epoch it worked in, so every page has something of it to show.
"""

import io
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.management import call_command
from django.utils import timezone

from contributors.models import TelemetryBatch
from contributors.telemetry import store as ingest
from tests.support.agent_api import Agent, batch, enroll, iso, nvml_uuid, sample
from tests.support.rewards import attest

IMG = "<img src=x onerror=alert(1)>"
LINK = '<a href="javascript:alert(1)">x</a>'
# A plotly.js hover template would replace this with the trace's uuid.
TEMPLATE = "%{meta}"

HOSTNAME = f"rig {IMG} {LINK} {TEMPLATE}"
# RTX 4090s by their catalog row (so 24564 MiB fits the model), markup after the model's name.
RTX_4090_MIB = 24564
GPU_NAMES = (f"NVIDIA GeForce RTX 4090 {IMG}", f"NVIDIA GeForce RTX 4090 {LINK}")
DRIVER_VERSION = LINK
AGENT_VERSION = IMG
JOB_ID = f"job {LINK}"
# Every string above as it must read on a page.
PAYLOADS = (HOSTNAME, *GPU_NAMES, DRIVER_VERSION, AGENT_VERSION, JOB_ID)


@dataclass
class Machine:
    agent: Agent
    uuids: list[str]
    epoch_start: datetime  # the settled hour its GPUs worked in


def reported_machine(
    owner,
    *,
    hostname: str = HOSTNAME,
    gpu_names=GPU_NAMES,
    job_id: str = JOB_ID,
    label: str = "markup",
) -> Machine:
    """Enroll a machine of `owner`, report two hours ago (GPU 0 in an attested job) and the
    last minutes, store the samples and settle that hour."""
    uuids = [nvml_uuid(f"{label}-{i}") for i in range(len(gpu_names))]
    inventory = [
        {"uuid": u, "name": n, "memory_total_mib": RTX_4090_MIB, "driver_version": DRIVER_VERSION}
        for u, n in zip(uuids, gpu_names, strict=True)
    ]
    agent = Agent(enroll(owner, inventory, hostname=hostname, agent_version=AGENT_VERSION))
    assert agent.rejected_gpus == []

    now = timezone.now()
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    attested = attest(job_id, uuids[0], start, start + timedelta(hours=1))
    assert attested.status_code == 201, attested.content
    readings = {"memory_used_mib": 1024, "memory_total_mib": RTX_4090_MIB, "power_w": 250.0}
    samples = []
    for index, uuid in enumerate(uuids):
        job = {"job_id": job_id} if index == 0 else {}
        samples += [
            sample(uuid, start + timedelta(seconds=s), **readings, **job)
            for s in range(0, 3600, 60)
        ]
        samples += [sample(uuid, now - timedelta(seconds=s), **readings) for s in (90, 60, 30)]
    response = agent.send(batch(samples))
    assert response.status_code == 202, response.content
    assert response.json()["rejected"] == []

    pending = TelemetryBatch.objects.filter(status=TelemetryBatch.Status.PENDING)
    for pk in pending.values_list("pk", flat=True):
        ingest.ingest(pk)
    call_command("settle_epochs", until=iso(start + timedelta(hours=1)), stdout=io.StringIO())
    return Machine(agent=agent, uuids=uuids, epoch_start=start)
