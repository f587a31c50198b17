"""A node token or enrollment code is shown once, in the answer that made it, and kept nowhere."""

import json
import re

import pytest
from django.contrib.sessions.models import Session
from django.test import Client

from contributors.models import Node
from tests.support.siwe import ALICE, sign_in

pytestmark = pytest.mark.django_db

GPU = {"uuid": "GPU-11111111-2222-3333-4444-555555555555", "name": "NVIDIA L40S",
       "memory_total_mib": 46068}  # fmt: skip


@pytest.fixture
def alice():
    client = Client()
    assert sign_in(client, ALICE).status_code == 200
    return client


def stored_anywhere(client, secret: str) -> list[str]:
    """Where `secret` can be read back outside the one response: session rows and cookies."""
    places = []
    for session in Session.objects.all():
        if secret in session.session_data or secret in json.dumps(session.get_decoded()):
            places.append(f"session {session.session_key}")
    places += [
        f"cookie {name}" for name, morsel in client.cookies.items() if secret in morsel.value
    ]
    return places


def shown(response, pattern: str) -> str:
    match = re.search(pattern, response.content.decode())
    assert match, response.content.decode()
    return match.group(1)


def enroll(code: str) -> str:
    response = Client().post(
        "/api/v1/agent/enroll",
        {"enrollment_code": code, "hostname": "rig", "agent_version": "t", "gpus": [GPU]},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return response.json()["node_token"]


def test_enrollment_code_is_in_its_answer_only(alice):
    response = alice.post("/nodes/enrollment-code")

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    code = shown(response, r"--code (\S+)</pre>")
    assert not any(code in morsel.value for morsel in response.cookies.values())
    assert stored_anywhere(alice, code) == []
    assert code not in alice.get("/nodes/").content.decode()
    assert enroll(code)  # the code shown is the working one


def test_rotated_token_is_in_its_answer_only(alice):
    old = enroll(shown(alice.post("/nodes/enrollment-code"), r"--code (\S+)</pre>"))
    node = Node.objects.get()

    response = alice.post(f"/nodes/{node.pk}/rotate")

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    token = shown(response, r"omnitensor-agent set-token (\S+)</pre>")
    assert token != old
    assert not any(token in morsel.value for morsel in response.cookies.values())
    assert stored_anywhere(alice, token) == []
    assert token not in alice.get("/nodes/").content.decode()
    config = Client().get("/api/v1/agent/config", headers={"Authorization": f"Bearer {token}"})
    assert config.status_code == 200
