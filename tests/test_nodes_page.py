"""The /nodes/ page: add a machine, revoke and rotate tokens, commit memory per GPU."""

import re

import pytest
from django.test import Client

from contributors.models import GPU, Node
from tests.support.siwe import ALICE, BOB, sign_in

pytestmark = pytest.mark.django_db

GPU_INVENTORY = [
    {"uuid": "GPU-11111111-2222-3333-4444-555555555555", "name": "NVIDIA L40S",
     "memory_total_mib": 46068, "driver_version": "595.80"},
]  # fmt: skip


@pytest.fixture
def alice():
    client = Client()
    assert sign_in(client, ALICE).status_code == 200
    return client


def add_machine(client) -> str:
    page = client.post("/nodes/enrollment-code", follow=True)
    html = page.content.decode()
    match = re.search(r"omnitensor-agent enroll --portal (\S+) --code (\S+)</pre>", html)
    assert match, html
    assert match.group(1) == "http://testserver"
    return match.group(2)


def enroll(code: str) -> dict:
    response = Client().post(
        "/api/v1/agent/enroll",
        {"enrollment_code": code, "hostname": "rig", "agent_version": "t", "gpus": GPU_INVENTORY},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def config(token: str):
    return Client().get("/api/v1/agent/config", headers={"Authorization": f"Bearer {token}"})


def test_new_contributor_sees_an_empty_state_that_leads_to_adding_a_machine(alice):
    html = alice.get("/nodes/").content.decode()
    assert "No machines yet" in html
    assert "Add a machine" in html


def test_add_a_machine_shows_a_working_command_once(alice):
    code = add_machine(alice)

    enrolled = enroll(code)

    assert config(enrolled["node_token"]).status_code == 200
    page = alice.get("/nodes/").content.decode()
    assert code not in page  # shown once
    assert "rig" in page and GPU_INVENTORY[0]["uuid"] in page


def test_nodes_page_needs_sign_in():
    response = Client().get("/nodes/")
    assert response.status_code == 302
    assert response["Location"].startswith("/signin/")


def test_revoke_stops_the_node_token(alice):
    token = enroll(add_machine(alice))["node_token"]
    node = Node.objects.get()

    alice.post(f"/nodes/{node.pk}/revoke")

    response = config(token)
    assert response.status_code == 403
    assert response.json()["error"] == "token_revoked"
    assert "revoked" in alice.get("/nodes/").content.decode()


def test_rotate_gives_a_new_token_and_the_old_one_stops(alice):
    old = enroll(add_machine(alice))["node_token"]
    node = Node.objects.get()

    page = alice.post(f"/nodes/{node.pk}/rotate", follow=True).content.decode()
    new = re.search(r"omnitensor-agent set-token (\S+)</pre>", page).group(1)

    assert config(old).status_code == 401
    assert config(new).status_code == 200


def test_owner_commits_memory_and_takes_a_gpu_out(alice):
    token = enroll(add_machine(alice))["node_token"]
    uuid = GPU_INVENTORY[0]["uuid"]

    alice.post(f"/gpus/{uuid}/settings", {"committed_memory_mib": "20000"})
    assert config(token).json()["gpus"] == [
        {"uuid": uuid, "committed_memory_mib": 20000, "enabled": False}
    ]

    alice.post(f"/gpus/{uuid}/settings", {"committed_memory_mib": "", "enabled": "on"})
    assert config(token).json()["gpus"] == [
        {"uuid": uuid, "committed_memory_mib": 46068, "enabled": True}
    ]


@pytest.mark.parametrize("value", ["46069", "-1", "lots"])
def test_committed_memory_beyond_the_gpu_is_refused(alice, value):
    enroll(add_machine(alice))
    uuid = GPU_INVENTORY[0]["uuid"]

    page = alice.post(
        f"/gpus/{uuid}/settings", {"committed_memory_mib": value, "enabled": "on"}, follow=True
    )

    assert "must be between 0 and 46068 MiB" in page.content.decode()
    assert GPU.objects.get().committed_memory_mib is None


def test_other_contributors_machines_are_out_of_reach(alice):
    enroll(add_machine(alice))
    node = Node.objects.get()
    bob = Client()
    sign_in(bob, BOB)

    assert bob.post(f"/nodes/{node.pk}/revoke").status_code == 404
    assert bob.post(f"/nodes/{node.pk}/rotate").status_code == 404
    assert bob.post(f"/gpus/{GPU_INVENTORY[0]['uuid']}/settings", {}).status_code == 404
    assert GPU_INVENTORY[0]["uuid"] not in bob.get("/nodes/").content.decode()
    node.refresh_from_db()
    assert node.revoked_at is None


def test_page_actions_need_the_csrf_token(alice):
    guarded = Client(enforce_csrf_checks=True)
    guarded.cookies = alice.cookies
    assert guarded.post("/nodes/enrollment-code").status_code == 403
