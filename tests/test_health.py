"""GET /healthz: 200 with the state of each part, 503 naming what is down."""

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db

# Nothing listens on port 1 of the loopback: a connection is refused at once.
DEAD_REDIS = "redis://127.0.0.1:1/0"


def test_healthy_portal_answers_200_with_every_check(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["down"] == []
    assert set(body["checks"]) == {"database", "broker", "cache"}
    assert all(check["ok"] for check in body["checks"].values())
    assert response["Cache-Control"].startswith("max-age=0")


def test_unreachable_broker_gives_503_naming_it(client):
    with override_settings(CELERY_BROKER_URL=DEAD_REDIS, CELERY_BROKER_TRANSPORT_OPTIONS={}):
        response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["down"] == ["broker"]
    assert body["checks"]["broker"]["error"]
    assert body["checks"]["database"]["ok"] is True


def test_unreachable_cache_gives_503_naming_it(client):
    dead_cache = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": DEAD_REDIS,
            "OPTIONS": {"socket_connect_timeout": 1},
        }
    }
    with override_settings(CACHES=dead_cache):
        response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["down"] == ["cache"]


def test_healthz_only_answers_get(client):
    assert client.post("/healthz").status_code == 405
