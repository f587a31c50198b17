"""POST /api/v1/agent/telemetry, sample by sample: each sample outside the time window or its
ranges is rejected with its code while the others are accepted; a sample or an inventory naming
another node's GPU is refused and flags the reporting node; an inventory update registers and
changes GPUs before the samples are read.
"""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from contributors.models import GPU, GpuFlag, NodeFlag, Sample
from tests.support.agent_api import (
    H100,
    Agent,
    batch,
    enroll,
    gpu,
    iso,
    nvml_uuid,
    sample,
    send_and_ingest,
)

pytestmark = pytest.mark.django_db


# --- per-sample verdicts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, error",
    [
        ({"utilization_gpu_pct": 101}, "out_of_range"),
        ({"utilization_gpu_pct": -1}, "out_of_range"),
        ({"utilization_gpu_pct": 100.0001}, "out_of_range"),
        ({"temperature_c": 500}, "out_of_range"),
        ({"power_w": -5}, "out_of_range"),
        ({"memory_used_mib": -1}, "out_of_range"),
        ({"memory_total_mib": 0, "memory_used_mib": 0}, "out_of_range"),
        ({"memory_used_mib": 81560}, "memory_used_exceeds_total"),
        ({"ts": "HOURS_AGO_25"}, "timestamp_out_of_window"),
        ({"ts": "MINUTES_AHEAD_10"}, "timestamp_out_of_window"),
        ({"gpu_uuid": nvml_uuid("nobody-has-this")}, "unknown_gpu"),
        ({"ts": "2024-05-01T10:00:00"}, "validation_failed"),  # no offset
        ({"memory_used_mib": "40000"}, "validation_failed"),
        ({"gpu_uuid": None}, "validation_failed"),
        ({"job_id": "j" * 129}, "validation_failed"),
    ],
)
def test_each_bad_sample_is_rejected_with_its_code(agent, overrides, error):
    now = timezone.now()
    times = {
        "HOURS_AGO_25": iso(now - timedelta(hours=25)),
        "MINUTES_AHEAD_10": iso(now + timedelta(minutes=10)),
    }
    overrides = {k: times.get(v, v) if isinstance(v, str) else v for k, v in overrides.items()}
    good = sample(H100["uuid"], now - timedelta(seconds=20))
    bad = sample(H100["uuid"], now - timedelta(seconds=10), **overrides)
    response = agent.send(batch([good, bad, sample(H100["uuid"], now)]))

    assert response.status_code == 202
    assert response.json()["accepted"] == 2
    assert response.json()["rejected"] == [{"index": 1, "error": error}]


@pytest.mark.parametrize(
    "offset", [timedelta(hours=-23, minutes=-55), timedelta(minutes=4), timedelta(0)]
)
def test_samples_inside_the_time_window_are_accepted(agent, offset):
    response = agent.send(batch([sample(H100["uuid"], timezone.now() + offset)]))
    assert response.json()["rejected"] == []
    assert response.json()["accepted"] == 1


@pytest.mark.parametrize(
    "reading",
    [
        {"utilization_gpu_pct": 0, "memory_used_mib": 0},
        {"utilization_gpu_pct": 100, "memory_used_mib": 81559},
        {"temperature_c": -40, "power_w": 0},
        {"temperature_c": 150, "power_w": 1050},  # an H100's 700 W board power x 1.5
    ],
)
def test_readings_at_the_edges_of_their_range_are_accepted(agent, reading):
    response = agent.send(batch([sample(H100["uuid"], **reading)]))
    assert response.json()["rejected"] == []


def test_power_at_the_edge_of_its_range_is_accepted_for_a_model_without_a_board_power(agent):
    """Only the range bounds the power of a model the catalog does not rate."""
    unrated = gpu(nvml_uuid("unrated"), name="Acme Tensor X1", memory_total_mib=16384)
    reading = sample(
        unrated["uuid"], memory_total_mib=16384, memory_used_mib=0, temperature_c=150, power_w=5000
    )
    response = agent.send(batch([reading], gpus=[unrated]))

    assert "rejected_gpus" not in response.json()
    assert response.json()["rejected"] == []
    assert GPU.objects.get(uuid=unrated["uuid"]).unrated


@pytest.mark.parametrize("field", ["utilization_gpu_pct", "temperature_c", "power_w"])
@pytest.mark.parametrize("literal", ["1e400", "-1e400"])
def test_infinite_readings_are_out_of_range(agent, field, literal):
    body = batch([sample(H100["uuid"], **{field: "__INFINITY__"})])
    raw = json.dumps(body).replace('"__INFINITY__"', literal)
    response = agent.send(raw, raw=True)

    assert response.status_code == 202
    assert response.json()["rejected"] == [{"index": 0, "error": "out_of_range"}]


@pytest.mark.parametrize("item", [[1, 2], "sample", 7, None])
def test_a_sample_that_is_not_an_object_is_validation_failed(agent, item):
    response = agent.send(batch([item, sample(H100["uuid"])]))

    assert response.status_code == 202
    assert response.json()["accepted"] == 1
    assert response.json()["rejected"] == [{"index": 0, "error": "validation_failed"}]


@pytest.mark.parametrize("missing", ["gpu_uuid", "ts", "memory_used_mib", "memory_total_mib"])
def test_a_sample_missing_a_required_field_is_validation_failed(agent, missing):
    item = sample(H100["uuid"])
    del item[missing]
    response = agent.send(batch([item]))

    assert response.status_code == 202
    assert response.json() == {
        "batch_id": response.json()["batch_id"],
        "accepted": 0,
        "rejected": [{"index": 0, "error": "validation_failed"}],
    }


@pytest.mark.parametrize("gpu_uuid", [["GPU-1"], {"uuid": "GPU-1"}])
def test_a_sample_whose_gpu_uuid_is_not_a_string_is_validation_failed(agent, gpu_uuid):
    response = agent.send(batch([sample(gpu_uuid), sample(H100["uuid"])]))

    assert response.status_code == 202, response.content[:300]
    assert response.json()["accepted"] == 1
    assert response.json()["rejected"] == [{"index": 0, "error": "validation_failed"}]


def test_optional_readings_may_be_null_or_absent(agent, django_capture_on_commit_callbacks):
    now = timezone.now()
    null_util = sample(H100["uuid"], now - timedelta(seconds=2), utilization_gpu_pct=None)
    bare = sample(H100["uuid"], now - timedelta(seconds=1))
    for key in ("temperature_c", "power_w"):
        del bare[key]
    body = batch([null_util, bare])
    assert send_and_ingest(agent, body, django_capture_on_commit_callbacks)["accepted"] == 2

    stored = list(Sample.objects.order_by("ts"))
    assert stored[0].utilization_gpu_pct is None
    assert (stored[1].temperature_c, stored[1].power_w) == (None, None)


def test_sample_for_another_nodes_gpu_is_refused_and_flags_the_reporting_node(alice, bob, agent):
    intruder = Agent(enroll(bob, hostname="bobs-box"))
    response = intruder.send(batch([sample(H100["uuid"])]))

    assert response.status_code == 202
    assert response.json()["rejected"] == [{"index": 0, "error": "gpu_owned_by_other_node"}]
    assert not GpuFlag.objects.exists()  # the owner's GPU keeps earning
    flag = NodeFlag.objects.get()
    assert (flag.node_id, flag.reason) == (intruder.node_id, NodeFlag.Reason.FOREIGN_GPU)
    assert (flag.gpu_uuids, flag.reports, flag.cleared_at) == ([H100["uuid"]], 1, None)
    first_seen = flag.last_seen_at

    # Reported again: the same open flag, counted and seen again.
    again = intruder.send(batch([sample(H100["uuid"])]))
    assert again.json()["rejected"] == [{"index": 0, "error": "gpu_owned_by_other_node"}]
    flag.refresh_from_db()
    assert NodeFlag.objects.count() == 1 and flag.last_seen_at >= first_seen
    assert (flag.gpu_uuids, flag.reports) == ([H100["uuid"]], 2)
    assert not GpuFlag.objects.exists()


def test_inventory_naming_another_nodes_gpu_is_rejected_and_flags_the_reporting_node(bob, agent):
    intruder = Agent(enroll(bob, hostname="bobs-box"))
    response = intruder.send(batch([sample(H100["uuid"])], gpus=[H100]))

    assert response.status_code == 202
    body = response.json()
    assert body["rejected"] == [{"index": 0, "error": "gpu_owned_by_other_node"}]
    assert body["rejected_gpus"] == [{"index": 0, "error": "gpu_owned_by_other_node"}]
    assert GPU.objects.get(uuid=H100["uuid"]).node_id == agent.node_id
    assert not GpuFlag.objects.exists()
    # One report naming it, however many times within it: one flag, counted once.
    flag = NodeFlag.objects.get(node_id=intruder.node_id)
    assert (flag.reason, flag.gpu_uuids, flag.reports) == (
        NodeFlag.Reason.FOREIGN_GPU,
        [H100["uuid"]],
        1,
    )


def test_admin_sees_the_flag_of_a_node_reporting_another_nodes_gpu(admin_client, bob, agent):
    Agent(enroll(bob, hostname="bobs-box")).send(batch([sample(H100["uuid"])]))
    flag = NodeFlag.objects.get()

    listing = admin_client.get("/admin/contributors/nodeflag/")
    assert listing.status_code == 200
    assert f"/admin/contributors/nodeflag/{flag.pk}/change/" in listing.content.decode()
    page = admin_client.get(f"/admin/contributors/nodeflag/{flag.pk}/change/")
    assert page.status_code == 200
    assert H100["uuid"] in page.content.decode()
    assert not GpuFlag.objects.exists()


def test_inventory_update_registers_new_gpus_before_reading_samples(agent):
    new = gpu(nvml_uuid("added-later"), name="NVIDIA L40S", memory_total_mib=46068)
    response = agent.send(batch([sample(new["uuid"], memory_total_mib=46068)], gpus=[new]))

    assert response.status_code == 202
    assert response.json() == {
        "batch_id": response.json()["batch_id"],
        "accepted": 1,
        "rejected": [],
    }
    assert GPU.objects.get(uuid=new["uuid"]).node_id == agent.node_id


def test_inventory_update_changes_a_gpus_reported_fields(agent):
    changed = {**H100, "name": "NVIDIA H100 PCIe", "driver_version": "560.28.03"}
    response = agent.send(batch([], gpus=[changed]))

    assert response.status_code == 202 and "rejected_gpus" not in response.json()
    stored = GPU.objects.get(uuid=H100["uuid"])
    assert (stored.name, stored.driver_version, stored.node_id) == (
        "NVIDIA H100 PCIe",
        "560.28.03",
        agent.node_id,
    )
    assert GPU.objects.count() == 1


def test_inventory_update_with_a_smaller_total_lowers_the_commitment(agent):
    GPU.objects.filter(uuid=H100["uuid"]).update(committed_memory_mib=80000)
    response = agent.send(batch([], gpus=[{**H100, "memory_total_mib": 79000}]))

    assert response.status_code == 202
    stored = GPU.objects.get(uuid=H100["uuid"])
    assert (stored.memory_total_mib, stored.committed_memory_mib) == (79000, 79000)
