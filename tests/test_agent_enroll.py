"""POST /api/v1/agent/enroll, as DESIGN.md "Agent API (v1)" fixes it: a single-use enrollment
code becomes a node and its token (shown once); the inventory registers the node's GPUs and MIG
instances, and a GPU that belongs to another node flags the enrolling one.
"""

import hashlib
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from contributors.models import GPU, EnrollmentCode, GpuFlag, Node, NodeFlag
from contributors.signin import contributor_for_sign_in
from tests.support.agent_api import ENROLL, H100, Agent, enroll, gpu, new_code, nvml_uuid
from tests.support.siwe import ALICE

pytestmark = pytest.mark.django_db


def test_enroll_returns_the_node_and_its_token_once(alice):
    response = enroll(alice, [H100], hostname="  rig-1.lan ", agent_version="0.3.1")

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"node_id", "node_token", "sample_interval_s", "report_interval_s"}
    assert (body["sample_interval_s"], body["report_interval_s"]) == (10, 30)
    assert response["Cache-Control"] == "no-store"
    node = Node.objects.get(pk=body["node_id"])
    assert (node.owner, node.hostname, node.agent_version) == (alice, "rig-1.lan", "0.3.1")
    # Stored only as a hash.
    assert node.token_hash == hashlib.sha256(body["node_token"].encode()).hexdigest()
    assert body["node_token"] not in {node.token_prefix, node.token_hash}
    assert EnrollmentCode.objects.get(owner=alice).node == node


def test_enroll_registers_gpus_with_their_fields(alice):
    mig = {
        "uuid": "MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "name": "NVIDIA H100 80GB HBM3 MIG 3g.40gb",
        "memory_total_mib": 40192,
        "mig_parent_uuid": H100["uuid"],
    }
    response = enroll(alice, [mig, H100])

    assert response.status_code == 201
    assert "rejected_gpus" not in response.json()
    parent = GPU.objects.get(uuid=H100["uuid"])
    assert parent.node_id == response.json()["node_id"]
    assert (parent.name, parent.memory_total_mib) == (H100["name"], 81559)
    assert (parent.driver_version, parent.pci_bus_id) == ("550.54.15", "00000000:17:00.0")
    assert parent.committed_memory_mib is None and parent.enabled
    child = GPU.objects.get(uuid=mig["uuid"])
    assert child.mig_parent == parent
    assert (child.memory_total_mib, child.driver_version) == (40192, "")


def test_enrollment_code_is_single_use(alice):
    code = new_code(alice)
    body = {"enrollment_code": code, "hostname": "a", "agent_version": "1", "gpus": []}
    assert Client().post(ENROLL, body, content_type="application/json").status_code == 201

    again = Client().post(ENROLL, body, content_type="application/json")
    assert again.status_code == 409
    assert again.json()["error"] == "enrollment_code_used"
    assert Node.objects.count() == 1


def test_expired_enrollment_code_is_refused(alice):
    row, code = EnrollmentCode.issue(alice)
    past = timezone.now() - timedelta(hours=2)
    EnrollmentCode.objects.filter(pk=row.pk).update(
        created_at=past, expires_at=past + timedelta(hours=1)
    )
    response = Client().post(ENROLL, {"enrollment_code": code}, content_type="application/json")

    assert response.status_code == 410
    assert response.json()["error"] == "enrollment_code_expired"
    assert not Node.objects.exists()


def test_unknown_enrollment_code_is_refused(alice):
    new_code(alice)
    response = Client().post(
        ENROLL, {"enrollment_code": "enr_0123456789ab_nope"}, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_enrollment_code"
    assert response.json()["detail"]


@pytest.mark.parametrize(
    "fields, bad",
    [
        ({"enrollment_code": None}, "enrollment_code"),
        ({"enrollment_code": 12345}, "enrollment_code"),
        ({"hostname": 7}, "hostname"),
        ({"hostname": "h" * 256}, "hostname"),
        ({"agent_version": "v" * 51}, "agent_version"),
        ({"gpus": {"uuid": "GPU-1"}}, "gpus"),
        ({"gpus": None}, "gpus"),
    ],
)
def test_enroll_with_bad_fields_is_validation_failed(alice, fields, bad):
    code = new_code(alice)
    body = {"enrollment_code": code, "hostname": "rig", "agent_version": "1", "gpus": []}
    body.update(fields)
    response = Client().post(ENROLL, body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"] == "validation_failed"
    assert [e["field"] for e in response.json()["errors"]] == [bad]
    assert EnrollmentCode.objects.get().used_at is None  # the code is still good


def test_racing_enrollments_with_one_code_make_one_node(transactional_db):
    owner = contributor_for_sign_in(ALICE.address)
    code = EnrollmentCode.issue(owner)[1]
    body = {"enrollment_code": code, "hostname": "rig", "agent_version": "1", "gpus": []}

    barrier = threading.Barrier(4)
    responses = []

    def attempt(i):
        try:
            barrier.wait()
            body_i = {**body, "hostname": f"rig-{i}"}
            responses.append(Client().post(ENROLL, body_i, content_type="application/json"))
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409]
    assert {r.json().get("error") for r in responses if r.status_code == 409} == {
        "enrollment_code_used"
    }
    assert owner.nodes.count() == 1


def test_enroll_with_a_body_that_is_not_json_is_invalid_json():
    response = Client().post(ENROLL, "{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_json"


def test_enroll_with_a_gpu_of_another_node_lists_it_and_flags_the_enrolling_node(alice, bob):
    first = Agent(enroll(alice, [H100]))
    other = gpu(nvml_uuid("bob-own"), name="NVIDIA GeForce RTX 4090", memory_total_mib=24564)
    response = enroll(bob, [other, H100], hostname="bobs-box")

    assert response.status_code == 201
    body = response.json()
    assert body["rejected_gpus"] == [{"index": 1, "error": "gpu_owned_by_other_node"}]
    bobs_node = Node.objects.get(pk=body["node_id"])
    assert GPU.objects.get(uuid=H100["uuid"]).node_id == first.node_id  # not moved
    assert list(bobs_node.gpus.values_list("uuid", flat=True)) == [other["uuid"]]
    # A known uuid is not a weapon: the owner's GPU is not flagged, the enrolling node is.
    assert not GpuFlag.objects.exists()
    flag = NodeFlag.objects.get()
    assert (flag.node, flag.reason, flag.gpu_uuids, flag.reports) == (
        bobs_node,
        NodeFlag.Reason.FOREIGN_GPU,
        [H100["uuid"]],
        1,
    )
    assert flag.cleared_at is None


def test_enroll_with_an_invalid_gpu_entry_registers_the_others(alice):
    response = enroll(alice, [{"uuid": "GPU with spaces", "name": "x"}, H100])

    assert response.status_code == 201
    rejected = response.json()["rejected_gpus"]
    assert [(r["index"], r["error"]) for r in rejected] == [(0, "validation_failed")]
    assert {e["field"] for e in rejected[0]["errors"]} == {"uuid", "memory_total_mib"}
    assert list(GPU.objects.values_list("uuid", flat=True)) == [H100["uuid"]]


def test_enrolled_node_fits_its_columns(alice):
    """hostname may be 255 characters; the node's name column holds 100 (a 500 on PostgreSQL)."""
    response = enroll(alice, hostname="h" * 200)

    assert response.status_code == 201
    node = Node.objects.get(pk=response.json()["node_id"])
    assert len(node.name) <= Node._meta.get_field("name").max_length


@pytest.mark.parametrize(
    "fields",
    [
        {"enrollment_code": "enr_\ud800"},
        {"hostname": "rig-\ud800"},
        {"gpus": [{**H100, "name": "NVIDIA \ud800"}]},
    ],
    ids=["code", "hostname", "gpu-name"],
)
def test_enroll_with_a_lone_surrogate_is_refused_not_a_server_error(alice, fields):
    response = enroll(alice, **fields)

    # Not storable text: refused as a whole (or the field as invalid), never a 500.
    assert response.status_code == 400
    assert response.json()["error"] in {"invalid_json", "validation_failed"}
    assert not Node.objects.exists()
    assert EnrollmentCode.objects.get().used_at is None


def test_mig_links_are_one_level_never_a_chain_or_a_cycle(alice):
    """An instance's work counts for its parent, and a held-out parent holds it out too:
    a nested or circular link would let an instance earn past that."""
    a, b, c, p = (nvml_uuid(label) for label in ("A", "B", "C", "P"))
    p1 = nvml_uuid("P1", "MIG")
    inventory = [
        {"uuid": a, "name": "x", "memory_total_mib": 1000, "mig_parent_uuid": b},
        {"uuid": b, "name": "x", "memory_total_mib": 1000, "mig_parent_uuid": c},
        {"uuid": c, "name": "x", "memory_total_mib": 1000, "mig_parent_uuid": a},
        {"uuid": p, "name": "x", "memory_total_mib": 1000},
        {"uuid": p1, "name": "x", "memory_total_mib": 500, "mig_parent_uuid": p},
    ]
    assert enroll(alice, inventory).status_code == 201

    links = dict(
        GPU.objects.filter(mig_parent__isnull=False).values_list("uuid", "mig_parent__uuid")
    )
    assert links == {p1: p}
    assert not GPU.objects.filter(mig_parent__mig_parent__isnull=False).exists()
