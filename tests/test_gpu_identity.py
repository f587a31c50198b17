"""A known GPU uuid is not a weapon (DESIGN.md "GPU identity"): another node that names it is
refused per sample and flagged itself; the owner's GPU keeps its node and keeps earning. A
machine re-installed by its owner takes its GPUs over, history included."""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from contributors.models import GPU, GpuFlag, Node, NodeFlag, Sample
from rewards.models import HeldOut, RewardEntry
from tests.support.agent_api import Agent, batch, enroll, h100, sample

pytestmark = pytest.mark.django_db


@pytest.fixture
def owned(alice):
    """Alice's machine with her H100, reporting."""
    agent = Agent(enroll(alice, [h100()], hostname="alice-rig"))
    assert agent.send(batch([sample(h100()["uuid"])])).status_code == 202
    return agent


def test_a_stranger_naming_a_gpu_is_refused_per_sample_and_flagged_itself(bob, owned):
    stranger = Agent(enroll(bob, hostname="bobs-box"))
    uuid = h100()["uuid"]

    response = stranger.send(batch([sample(uuid)], gpus=[h100()]))

    assert response.status_code == 202
    assert response.json()["rejected"] == [{"index": 0, "error": "gpu_owned_by_other_node"}]
    assert response.json()["rejected_gpus"] == [{"index": 0, "error": "gpu_owned_by_other_node"}]
    assert GPU.objects.get(uuid=uuid).node_id == owned.node_id
    assert not GpuFlag.objects.exists()  # nothing on the owner's GPU
    flag = NodeFlag.objects.get()
    assert (flag.node_id, flag.reason, flag.gpu_uuids, flag.reports) == (
        stranger.node_id,
        NodeFlag.Reason.FOREIGN_GPU,
        [uuid],
        1,
    )


def test_repeated_reports_update_the_one_flag(bob, owned):
    stranger = Agent(enroll(bob, hostname="bobs-box"))
    other = h100("alice-second")["uuid"]
    Agent(enroll(owned.node.owner, [h100("alice-second")]))

    for uuid in (h100()["uuid"], h100()["uuid"], other):
        stranger.send(batch([sample(uuid)]))

    flag = NodeFlag.objects.get()
    assert flag.reports == 3
    assert sorted(flag.gpu_uuids) == sorted([h100()["uuid"], other])


def test_a_cleared_flag_does_not_touch_the_owner_and_a_new_report_opens_a_new_one(bob, owned):
    stranger = Agent(enroll(bob, hostname="bobs-box"))
    stranger.send(batch([sample(h100()["uuid"])]))
    NodeFlag.objects.update(cleared_at=timezone.now())

    stranger.send(batch([sample(h100()["uuid"])]))

    assert NodeFlag.objects.filter(cleared_at__isnull=True).count() == 1
    assert NodeFlag.objects.count() == 2
    assert not GpuFlag.objects.exists()


def test_the_owner_keeps_earning_while_a_stranger_names_the_gpu(bob, owned):
    """Settle an epoch in which a stranger named the GPU all along: the owner is paid."""
    stranger = Agent(enroll(bob, hostname="bobs-box"))
    now = timezone.now()
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    uuid = h100()["uuid"]
    gpu = GPU.objects.get(uuid=uuid)
    Sample.objects.bulk_create(
        Sample(gpu=gpu, ts=start + timedelta(seconds=10 * i), memory_used_mib=1000,
               memory_total_mib=81559, utilization_gpu_pct=0.0)
        for i in range(360)
    )  # fmt: skip
    stranger.send(batch([sample(uuid)]))

    # Samples written straight into the table count once accumulated as a drain would.
    call_command("rebuild_usage", "--from", start.isoformat(), stdout=io.StringIO())
    call_command("settle_epochs", until=(start + timedelta(hours=1, minutes=30)).isoformat())

    assert not HeldOut.objects.filter(gpu=gpu).exists()
    assert RewardEntry.objects.filter(gpu=gpu, kind=RewardEntry.Kind.IDLE).exists()


def test_enrolling_a_reinstalled_machine_moves_its_gpu_with_history(alice, owned):
    owned.node.revoke()
    gpu = GPU.objects.get(uuid=h100()["uuid"])
    history = Sample.objects.filter(gpu=gpu).count()

    reinstalled = Agent(enroll(alice, [h100()], hostname="alice-rig"))

    assert reinstalled.rejected_gpus == []
    gpu.refresh_from_db()
    assert gpu.node_id == reinstalled.node_id
    assert Sample.objects.filter(gpu=gpu).count() == history
    assert not NodeFlag.objects.exists() and not GpuFlag.objects.exists()
    assert reinstalled.send(batch([sample(gpu.uuid)])).json()["accepted"] == 1


def test_a_machine_offline_long_enough_hands_its_gpu_to_the_new_node(alice, owned, settings):
    Node.objects.filter(pk=owned.node_id).update(
        last_seen_at=timezone.now() - timedelta(seconds=settings.GPU_MOVE_AFTER_OFFLINE_S + 5)
    )
    reinstalled = Agent(enroll(alice, hostname="alice-rig-2"))

    response = reinstalled.send(batch([sample(h100()["uuid"])], gpus=[h100()]))

    assert response.json()["accepted"] == 1
    assert GPU.objects.get(uuid=h100()["uuid"]).node_id == reinstalled.node_id
    assert not NodeFlag.objects.exists()


def test_the_owners_second_node_does_not_take_a_gpu_that_is_online(alice, owned):
    """Two agents on one machine: the GPU stays with the node that is reporting."""
    second = Agent(enroll(alice, [h100()], hostname="alice-rig-again"))

    assert second.rejected_gpus == [{"index": 0, "error": "gpu_owned_by_other_node"}]
    assert GPU.objects.get(uuid=h100()["uuid"]).node_id == owned.node_id
    assert NodeFlag.objects.get().node_id == second.node_id


def test_another_contributor_never_takes_a_revoked_nodes_gpu(bob, owned):
    owned.node.revoke()
    stranger = Agent(enroll(bob, [h100()], hostname="bobs-box"))

    assert stranger.rejected_gpus == [{"index": 0, "error": "gpu_owned_by_other_node"}]
    assert GPU.objects.get(uuid=h100()["uuid"]).node_id == owned.node_id


def test_uuid_case_cannot_register_the_same_gpu_twice(bob, owned):
    shouted = h100()["uuid"].upper()
    stranger = Agent(enroll(bob, [h100(uuid=shouted)], hostname="bobs-box"))

    assert stranger.rejected_gpus == [{"index": 0, "error": "gpu_owned_by_other_node"}]
    assert GPU.objects.count() == 1
