"""Floods: limits per client address on enrollment attempts, sign-in nonces and requests with
tokens that are not valid (429 with Retry-After), and a token checked before its body is read."""

import secrets
import time

import pytest
from django.core.cache import cache
from django.test import Client

from contributors import tokens
from contributors.models import SignInNonce
from tests.support.agent_api import ENROLL, JOBS, TELEMETRY, Agent, batch, enroll, h100, sample

pytestmark = pytest.mark.django_db


def made_up_token() -> str:
    return f"ot_{secrets.token_hex(6)}_{secrets.token_urlsafe(24)}"


def post_telemetry(token: str, body, address: str = "203.0.113.7"):
    return Client().post(
        TELEMETRY,
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
        REMOTE_ADDR=address,
    )


def test_a_made_up_token_is_refused_before_the_body_is_read(django_assert_max_num_queries):
    with django_assert_max_num_queries(1):  # the one lookup of the token's node
        response = post_telemetry(made_up_token(), "[" * 100_000)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_a_revoked_token_is_refused_before_the_body_is_read(alice):
    agent = Agent(enroll(alice, [h100()]))
    agent.node.revoke()

    response = post_telemetry(agent.token, "{not json")

    assert response.status_code == 403
    assert response.json()["error"] == "token_revoked"


def test_bad_tokens_from_one_address_are_throttled_and_others_are_not(settings):
    settings.BAD_TOKEN_RATE_PER_MIN = 5
    here = "203.0.113.70"
    answers = [post_telemetry(made_up_token(), "{}", here).status_code for _ in range(7)]

    assert answers == [401] * 5 + [429] * 2
    throttled = post_telemetry(made_up_token(), "{}", here)
    assert throttled.json()["error"] == "throttled"
    assert 1 <= int(throttled["Retry-After"]) <= 61
    assert post_telemetry(made_up_token(), "{}", address="198.51.100.9").status_code == 401


def test_a_valid_agent_behind_a_throttled_address_still_reports(alice, settings):
    settings.BAD_TOKEN_RATE_PER_MIN = 2
    agent = Agent(enroll(alice, [h100()]))
    for _ in range(3):
        post_telemetry(made_up_token(), "{}", address="127.0.0.1")

    response = agent.send(batch([sample(h100()["uuid"])]))

    assert response.status_code == 202


def test_bad_tokens_leave_no_counter_in_the_cache():
    token = made_up_token()
    post_telemetry(token, "{}")

    window = int(time.time() // 60)
    assert cache.get(f"ratelimit:telemetry:{tokens.digest(token)}:{window}") is None
    assert cache.get(f"agent:{tokens.digest(token)}") is None


def test_bad_scheduler_tokens_are_throttled(settings):
    settings.BAD_TOKEN_RATE_PER_MIN = 3
    client = Client(REMOTE_ADDR="203.0.113.8")
    answers = [
        client.post(
            JOBS, {}, content_type="application/json", headers={"Authorization": "Bearer nope"}
        ).status_code
        for _ in range(5)
    ]
    assert answers == [401, 401, 401, 429, 429]


def test_enrollment_attempts_are_limited_per_address(settings):
    settings.ENROLL_RATE_PER_MIN = 3
    client = Client(REMOTE_ADDR="203.0.113.9")
    body = {"enrollment_code": "guess", "hostname": "x", "agent_version": "1", "gpus": []}
    answers = [client.post(ENROLL, body, content_type="application/json") for _ in range(5)]

    assert [a.status_code for a in answers] == [400, 400, 400, 429, 429]
    assert answers[-1].json()["error"] == "throttled" and answers[-1]["Retry-After"]


def test_sign_in_nonces_are_limited_per_address(settings):
    settings.SIWE_NONCE_RATE_PER_MIN = 3
    client = Client(REMOTE_ADDR="203.0.113.10")
    answers = [client.get("/auth/nonce") for _ in range(5)]

    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    assert answers[-1].json()["error"] == "throttled" and answers[-1]["Retry-After"]
    assert SignInNonce.objects.count() == 3  # a refused request writes no row
