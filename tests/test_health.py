"""GET /healthz: ok/down per part for everyone, on time; the details for staff and the log."""

import logging
import socket
import threading
import time

import pytest
from django.test import override_settings

from contributors.models import Contributor

pytestmark = pytest.mark.django_db

# Nothing listens on port 1 of the loopback: a connection is refused at once.
DEAD_REDIS = "redis://127.0.0.1:1/0"
PARTS = {"database", "broker", "cache"}


def redis_cache(url: str) -> dict:
    # No timeouts of its own: the check must be bounded whatever the client would wait.
    return {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}


@pytest.fixture
def staff_client(client):
    staff = Contributor.objects.create(username="ops", is_staff=True)
    client.force_login(staff)
    return client


@pytest.fixture
def silent_redis():
    """A server that accepts connections and never answers: a Redis that hangs (stopped,
    swapping, behind a dead route). Closing it resets the waiting probes."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


def test_healthy_portal_answers_200_with_ok_per_part_and_nothing_else(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "parts": dict.fromkeys(PARTS, "ok")}
    assert response["Cache-Control"].startswith("max-age=0")


def test_unreachable_broker_gives_503_without_telling_the_public_why(client, caplog):
    with (
        override_settings(CELERY_BROKER_URL=DEAD_REDIS, CELERY_BROKER_TRANSPORT_OPTIONS={}),
        caplog.at_level(logging.WARNING, logger="portal.views"),
    ):
        response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "down",
        "parts": {"database": "ok", "broker": "down", "cache": "ok"},
    }
    assert "127.0.0.1" not in response.content.decode()
    # The details are in the log, for whoever runs the portal.
    logged = [r.getMessage() for r in caplog.records if r.name == "portal.views"]
    assert len(logged) == 1 and "broker" in logged[0] and "Error" in logged[0], logged


def test_unreachable_cache_gives_503_naming_the_part(client):
    with override_settings(CACHES=redis_cache(DEAD_REDIS)):
        response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["parts"] == {"database": "ok", "broker": "ok", "cache": "down"}


def test_a_redis_that_never_answers_is_down_within_the_deadline(client, silent_redis):
    hung = override_settings(
        CACHES=redis_cache(silent_redis),
        CELERY_BROKER_URL=silent_redis,
        CELERY_BROKER_TRANSPORT_OPTIONS={},
    )
    with hung:
        started = time.monotonic()
        first = client.get("/healthz")
        first_s = time.monotonic() - started
        threads_after_first = threading.active_count()
        started = time.monotonic()
        second = client.get("/healthz")
        second_s = time.monotonic() - started

    assert first.status_code == second.status_code == 503
    assert first.json()["parts"]["cache"] == "down"
    assert second.json()["parts"]["cache"] == "down"
    assert first_s < 4.0 and second_s < 4.0, (first_s, second_s)
    # The second check waited on the probes still hanging from the first, not on new ones.
    assert threading.active_count() <= threads_after_first


def test_staff_see_the_details(staff_client):
    with override_settings(CELERY_BROKER_URL=DEAD_REDIS, CELERY_BROKER_TRANSPORT_OPTIONS={}):
        response = staff_client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["parts"]["broker"] == "down"
    assert set(body["checks"]) == PARTS
    assert body["checks"]["broker"]["ok"] is False and body["checks"]["broker"]["error"]
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["database"]["latency_ms"] >= 0
    assert body["worker"] == {"last_heartbeat_age_s": None, "fresh": False}


def test_a_signed_in_contributor_who_is_not_staff_sees_what_the_public_sees(client):
    client.force_login(Contributor.objects.create(username="someone"))

    body = client.get("/healthz").json()

    assert body == {"status": "ok", "parts": dict.fromkeys(PARTS, "ok")}


def test_healthz_only_answers_get(client):
    assert client.post("/healthz").status_code == 405
