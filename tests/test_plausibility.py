"""Plausible GPUs only (DESIGN.md "GPU identity"): NVML uuid forms, memory that fits the model,
capped GPUs per node and nodes per contributor, and telemetry no hardware produces, which opens
the `implausible_telemetry` flag that holds the GPU out."""

import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from contributors.models import GPU, EnrollmentCode, GpuFlag, Node, Sample
from rewards.models import HeldOut, RewardEntry
from tests.support.agent_api import Agent, batch, enroll, h100, nvml_uuid, sample

pytestmark = pytest.mark.django_db

DEVICE = Path(__file__).parent / "data" / "device-h200"


# --- uuids ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uuid",
    [
        "GPU-e2fe30d4-a25e-fce3-b37e-6c52fb13ccb8",  # a real H200 (tests/data/device-h200)
        "MIG-00000001-0000-0000-0000-000000000001",  # R470+ MIG form (nvidia-smi -L, H200 MIG)
        "MIG-GPU-513536b6-7d19-9063-b049-1e69664bb298/3/0",  # legacy CUDA MIG form
    ],
)
def test_nvml_uuid_forms_register(alice, uuid):
    agent = Agent(enroll(alice, [h100(uuid=uuid)]))
    assert agent.rejected_gpus == []
    assert GPU.objects.get().uuid == uuid


@pytest.mark.parametrize(
    "uuid",
    [
        "GPU-0",
        "GPU-not-a-uuid-at-all",
        "gpu-e2fe30d4-a25e-fce3-b37e-6c52fb13ccb8x",
        "XPU-e2fe30d4-a25e-fce3-b37e-6c52fb13ccb8",
        "GPU-e2fe30d4a25efce3b37e6c52fb13ccb8",
        "MIG-GPU-513536b6-7d19-9063-b049-1e69664bb298/a/0",
        "GPU-e2fe30d4-a25e-fce3-b37e-6c52fb13ccb8\n",
    ],
)
def test_other_uuids_are_refused(alice, uuid):
    agent = Agent(enroll(alice, [h100(uuid=uuid)]))
    assert agent.rejected_gpus[0]["error"] == "validation_failed"
    assert agent.rejected_gpus[0]["errors"][0]["field"] == "uuid"
    assert not GPU.objects.exists()


def test_the_real_h200_the_agent_reported_registers_rated(alice):
    """What the node agent reported on a real H200 (device check) passes every check."""
    status = json.loads((DEVICE / "status-nvml.json").read_text())
    agent = Agent(enroll(alice, status["gpus"]))

    assert agent.rejected_gpus == []
    gpu = GPU.objects.get()
    assert (gpu.name, gpu.memory_total_mib, gpu.unrated) == ("NVIDIA H200", 143771, False)
    fresh = [{**s, "ts": sample(gpu.uuid)["ts"]} for s in status["samples"]]
    assert agent.send(batch(fresh)).json() | {"batch_id": None} == {
        "batch_id": None,
        "accepted": 1,
        "rejected": [],
    }


# --- memory and counts ------------------------------------------------------------------------


def test_a_gpu_larger_than_its_model_ships_is_refused(alice):
    forged = h100("forged", memory_total_mib=16 * 1024 * 1024)
    agent = Agent(enroll(alice, [forged, h100("honest")]))

    assert agent.rejected_gpus == [{"index": 0, "error": "implausible_memory"}]
    assert list(GPU.objects.values_list("uuid", flat=True)) == [h100("honest")["uuid"]]


def test_an_inventory_update_cannot_grow_a_gpu_past_its_model(alice):
    agent = Agent(enroll(alice, [h100()]))
    response = agent.send(batch([], gpus=[h100(memory_total_mib=1024 * 1024)]))

    assert response.json()["rejected_gpus"] == [{"index": 0, "error": "implausible_memory"}]
    assert GPU.objects.get().memory_total_mib == 81559


def test_an_unknown_model_is_accepted_capped_and_unrated(alice, settings):
    unknown = {**h100("acme"), "name": "Acme Tensor 9000", "memory_total_mib": 1024 * 1024}
    agent = Agent(enroll(alice, [unknown]))

    assert agent.rejected_gpus == []
    gpu = GPU.objects.get()
    assert gpu.unrated and gpu.memory_total_mib == settings.GPU_UNRATED_MAX_MEMORY_MIB
    # Its samples count with the capped memory, not the claimed one; no flag for the claim.
    claimed = sample(gpu.uuid, memory_used_mib=0, memory_total_mib=1024 * 1024, power_w=300.0)
    assert agent.send(batch([claimed])).json()["accepted"] == 1
    stored = json.loads(json.dumps(agent.node.batches.get().samples))[0]
    assert stored[4] == settings.GPU_UNRATED_MAX_MEMORY_MIB
    assert not GpuFlag.objects.exists()


def test_a_node_holds_at_most_the_setting_of_physical_gpus(alice, settings):
    settings.MAX_GPUS_PER_NODE = 2
    gpus = [h100(f"g{i}") for i in range(3)]
    instance = h100("g0-mig", uuid=nvml_uuid("g0-mig", "MIG"), memory_total_mib=10240)
    agent = Agent(enroll(alice, [*gpus, instance]))

    assert agent.rejected_gpus == [{"index": 2, "error": "too_many_gpus"}]
    assert GPU.objects.count() == 3  # two physical GPUs and the MIG instance


def test_a_contributor_holds_at_most_the_setting_of_nodes(alice, settings):
    settings.MAX_NODES_PER_CONTRIBUTOR = 2
    first = Agent(enroll(alice))
    Agent(enroll(alice))

    code = EnrollmentCode.issue(alice)[1]
    body = {"enrollment_code": code, "hostname": "third", "agent_version": "1", "gpus": []}
    refused = first.client.post("/api/v1/agent/enroll", body, content_type="application/json")
    assert refused.status_code == 409
    assert refused.json()["error"] == "too_many_nodes"

    first.node.revoke()  # a revoked machine makes room, and the same code still works
    again = first.client.post("/api/v1/agent/enroll", body, content_type="application/json")
    assert again.status_code == 201
    assert Node.objects.filter(owner=alice, revoked_at__isnull=True).count() == 2


# --- implausible telemetry --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reading", "error"),
    [
        ({"memory_used_mib": 90000, "memory_total_mib": 81559}, "memory_used_exceeds_total"),
        ({"memory_used_mib": 0, "memory_total_mib": 16 * 1024 * 1024}, "implausible_telemetry"),
        ({"power_w": 4000.0}, "implausible_telemetry"),
    ],
)
def test_implausible_telemetry_is_refused_and_flags_the_gpu(alice, reading, error):
    agent = Agent(enroll(alice, [h100()]))
    honest = sample(h100()["uuid"], timezone.now() - timedelta(seconds=20))
    response = agent.send(batch([honest, sample(h100()["uuid"], **reading)]))

    assert response.json()["accepted"] == 1
    assert response.json()["rejected"] == [{"index": 1, "error": error}]
    flag = GpuFlag.objects.get()
    assert (flag.gpu.uuid, flag.reason, flag.reported_by_id) == (
        h100()["uuid"],
        GpuFlag.Reason.IMPLAUSIBLE_TELEMETRY,
        agent.node_id,
    )

    # Again, by the remembered-agent path: the same flag, seen again.
    agent.send(batch([sample(h100()["uuid"], **reading)]))
    assert GpuFlag.objects.count() == 1


def test_utilization_of_a_gpu_in_mig_mode_is_implausible(alice):
    """nvidia-smi prints [N/A] for a GPU in MIG mode (tests' H100/H200 MIG captures); its
    instances may report their own activity (DCGM)."""
    parent = h100("parent")
    instance = h100("child", uuid=nvml_uuid("child", "MIG"), memory_total_mib=10240,
                    mig_parent_uuid=parent["uuid"])  # fmt: skip
    agent = Agent(enroll(alice, [parent, instance]))
    mig = {"memory_used_mib": 100, "memory_total_mib": 10240, "power_w": None}

    ok = agent.send(
        batch(
            [
                sample(instance["uuid"], utilization_gpu_pct=40.0, **mig),
                sample(parent["uuid"], utilization_gpu_pct=None),
            ]
        )
    )
    assert ok.json()["accepted"] == 2
    lie = agent.send(batch([sample(parent["uuid"], utilization_gpu_pct=90.0)]))
    assert lie.json()["rejected"] == [{"index": 0, "error": "implausible_telemetry"}]
    assert GpuFlag.objects.get().gpu.uuid == parent["uuid"]


def test_samples_and_jobs_find_their_gpu_whatever_the_uuid_case(alice):
    agent = Agent(enroll(alice, [h100(uuid=h100()["uuid"].upper())]))
    assert agent.rejected_gpus == [] and GPU.objects.get().uuid == h100()["uuid"]

    shouted = sample(h100()["uuid"].upper())
    assert agent.send(batch([shouted])).json()["accepted"] == 1


def test_a_forged_agent_cannot_take_the_idle_pool(alice, bob):
    """The attack from outside: a forged agent claimed 16 TiB of free memory on one H100 and
    took 99.6 % of an idle pool. Now its GPU is refused, or its samples are and it is held out."""
    Agent(enroll(alice, [h100("honest")]))
    forger = Agent(enroll(bob, [h100("forged")], hostname="forged"))
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    for label in ("honest", "forged"):
        gpu = GPU.objects.get(uuid=h100(label)["uuid"])
        Sample.objects.bulk_create(
            Sample(gpu=gpu, ts=start + timedelta(seconds=10 * i), memory_used_mib=0,
                   memory_total_mib=81559, utilization_gpu_pct=0.0)
            for i in range(360)
        )  # fmt: skip
    forged_reading = sample(h100("forged")["uuid"], memory_total_mib=16 * 1024 * 1024)
    assert forger.send(batch([forged_reading])).json()["rejected"][0]["error"] == (
        "implausible_telemetry"
    )

    # Samples written straight into the table count once accumulated as a drain would.
    call_command("rebuild_usage", "--from", start.isoformat(), stdout=io.StringIO())
    call_command("settle_epochs", until=(start + timedelta(hours=1, minutes=30)).isoformat())

    idle = RewardEntry.objects.filter(kind=RewardEntry.Kind.IDLE)
    assert [e.gpu.uuid for e in idle] == [h100("honest")["uuid"]]
    held = HeldOut.objects.get()
    assert (held.gpu.uuid, held.reason) == (h100("forged")["uuid"], HeldOut.Reason.FLAGGED)


@pytest.mark.parametrize("field", ["hostname", "agent_version"])
def test_control_characters_in_agent_strings_are_refused(alice, field):
    response = enroll(alice, **{field: "rig\x1b[2J\r\nadmin: ok"})

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": field, "error": response.json()["errors"][0]["error"]}
    ]
    assert not Node.objects.exists()


def test_control_characters_in_gpu_names_are_refused(alice):
    agent = Agent(enroll(alice, [h100(name="NVIDIA H100\x1b[31m\x07")]))
    assert agent.rejected_gpus[0]["errors"] == [
        {"field": "name", "error": "required, printable, at most 200 characters"}
    ]
