"""No body crashes a process: JSON nested deeper than `json_bodies.MAX_JSON_DEPTH` is refused
with 400 `invalid_json` before it is parsed, on every endpoint that takes a JSON body, and
an admin form too.

Importing eth-account (py_ecc) raised the limit to 100,000; `json.loads` of 100,000 `[` then
overflowed the C stack, and the worker died with SIGSEGV on an unauthenticated request.
tests/test_json_depth_processes.py sends such bodies to a real gunicorn.
"""

import json
import uuid

import pytest
from django.test import Client, RequestFactory
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from contributors.models import Contributor, EnrollmentCode
from portal.lib.errors import ApiError
from portal.lib.json_bodies import MAX_JSON_DEPTH, nests_too_deep
from rewards.models import GpuModel
from tests.support.agent_api import ENROLL, JOBS, TELEMETRY, batch, h100, sample, scheduler_token
from tests.support.deep_json import deep_bodies
from tests.support.siwe import ALICE, signed_in_with_wallet

pytestmark = pytest.mark.django_db

WALLETS = "/api/v1/me/wallets"
VERIFY = "/auth/verify"


def nested(depth: int, leaf="x"):
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def assert_refused_as_too_deep(response) -> None:
    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert body["error"] == "invalid_json"
    assert f"deeper than {MAX_JSON_DEPTH} levels" in body["detail"]


# --- The measure itself -------------------------------------------------------------------


def depth_of(value) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


# Strings full of what could fool a scanner: brackets, quotes, backslashes, escapes.
tricky_text = st.text(alphabet=st.sampled_from('[]{}"\\/:,ab\n\u00e9\u2028\U0001f600'))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | tricky_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky_text, inner, max_size=3),
    max_leaves=60,
)


@given(value=json_values, ensure_ascii=st.booleans(), indent=st.sampled_from([None, 1]))
def test_depth_is_measured_exactly_whatever_the_strings_hold(value, ensure_ascii, indent):
    text = json.dumps(value, ensure_ascii=ensure_ascii, indent=indent)

    for limit in {0, 1, 2, depth_of(value), max(depth_of(value) - 1, 0)}:
        assert nests_too_deep(text.encode(), limit) == (depth_of(value) > limit), limit


@pytest.mark.parametrize(
    "text, too_deep",
    [
        # An escaped backslash ends the string: what follows is structure.
        ('["\\\\", ' + "[" * 40 + "]" * 40 + "]", True),
        # An escaped quote does not end it: what follows is text.
        ('["\\"' + "[" * 40 + '"]', False),
        ('{"\\"[": "' + "{" * 40 + '"}', False),
        # Brackets never closed are refused however they are spread.
        ("[1, " * 40, True),
        ("]" + "[" * 40, True),
    ],
)
def test_quotes_and_escapes_cannot_hide_nesting(text, too_deep):
    assert nests_too_deep(text.encode()) is too_deep


# --- Every endpoint that takes JSON, through Django's test client ---------------------------


@pytest.fixture
def enrolled(client):
    """An agent enrolled through the API: (node token, its GPU's uuid)."""
    owner = Contributor.objects.create(username=f"depth-{uuid.uuid4().hex[:8]}")
    gpu = h100("depth")
    response = client.post(
        ENROLL,
        {
            "enrollment_code": EnrollmentCode.issue(owner)[1],
            "hostname": "rig-deep",
            "agent_version": "test",
            "gpus": [gpu],
        },
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return response.json()["node_token"], gpu["uuid"]


def post_raw(client: Client, path: str, body: bytes, **headers):
    csrf = client.cookies.get("csrftoken")
    if csrf is not None:
        headers.setdefault("X-CSRFToken", csrf.value)
    return client.post(path, body, content_type="application/json", headers=headers)


@pytest.mark.parametrize("shape", ["open arrays", "closed arrays", "open objects"])
def test_deep_enrollment_is_invalid_json(client, shape):
    body = deep_bodies(256 * 1024)[shape]

    assert_refused_as_too_deep(post_raw(client, ENROLL, body))


@pytest.mark.parametrize("shape", ["open arrays", "closed arrays", "open objects"])
def test_deep_telemetry_with_a_random_token_is_refused_unread(client, shape):
    body = deep_bodies(1024 * 1024)[shape]
    response = post_raw(client, TELEMETRY, body, Authorization=f"Bearer {uuid.uuid4().hex}")

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


@pytest.mark.parametrize("shape", ["open arrays", "closed arrays", "open objects"])
def test_deep_telemetry_from_an_enrolled_node_is_invalid_json(client, enrolled, shape):
    token, _ = enrolled
    body = deep_bodies(1024 * 1024)[shape]

    assert_refused_as_too_deep(post_raw(client, TELEMETRY, body, Authorization=f"Bearer {token}"))


def test_telemetry_one_level_too_deep_is_refused_and_at_the_bound_is_read(client, enrolled):
    token, gpu_uuid = enrolled
    auth = {"Authorization": f"Bearer {token}"}
    # The batch and its samples are 3 levels: a job id nested to the bound is read (and
    # refused as a field), one level more is not read at all.
    at_bound = batch([sample(gpu_uuid, job_id=nested(MAX_JSON_DEPTH - 3))])
    too_deep = batch([sample(gpu_uuid, job_id=nested(MAX_JSON_DEPTH - 2))])

    read = post_raw(client, TELEMETRY, json.dumps(at_bound).encode(), **auth)
    assert read.status_code in (200, 202), read.content
    assert read.json()["rejected"][0]["error"] == "validation_failed"
    assert_refused_as_too_deep(post_raw(client, TELEMETRY, json.dumps(too_deep).encode(), **auth))


@pytest.mark.parametrize("shape", ["open arrays", "closed arrays", "open objects"])
def test_deep_scheduler_job_is_invalid_json(client, shape):
    token = scheduler_token()
    body = deep_bodies(16 * 1024)[shape]

    assert_refused_as_too_deep(post_raw(client, JOBS, body, Authorization=f"Bearer {token}"))


@pytest.mark.parametrize("shape", ["open arrays", "closed arrays", "open objects"])
def test_deep_sign_in_is_invalid_json(shape):
    browser = Client(enforce_csrf_checks=True)
    browser.get("/auth/nonce")

    assert_refused_as_too_deep(post_raw(browser, VERIFY, deep_bodies(16 * 1024)[shape]))


@pytest.mark.parametrize("shape", ["open arrays", "closed arrays", "open objects"])
def test_deep_wallet_link_is_invalid_json(shape):
    browser = signed_in_with_wallet(ALICE)

    assert_refused_as_too_deep(post_raw(browser, WALLETS, deep_bodies(16 * 1024)[shape]))


def test_deep_demo_sign_in_is_invalid_json(settings):
    settings.DEBUG = True
    settings.DEMO_FLEET = True
    browser = Client(enforce_csrf_checks=True)
    browser.get("/auth/nonce")

    assert_refused_as_too_deep(post_raw(browser, "/auth/demo", b'{"name":' * 120))


def test_deep_claim_transaction_is_invalid_json():
    browser = signed_in_with_wallet(ALICE)
    path = "/api/v1/me/claims/1/transaction"

    assert_refused_as_too_deep(post_raw(browser, path, b"[" * 4096))


@pytest.mark.parametrize("shape", ["open arrays", "closed arrays", "open objects"])
def test_drf_request_data_is_bounded_too(shape):
    """Any view that reads `request.data` gets the parser settings name (REST_FRAMEWORK)."""
    raw = RequestFactory().post("/", deep_bodies(1024 * 1024)[shape], "application/json")
    request = Request(raw, parsers=[parser() for parser in api_settings.DEFAULT_PARSER_CLASSES])

    with pytest.raises(ApiError) as refused:
        request.data  # noqa: B018 - reading it parses the body
    assert (refused.value.status_code, refused.value.code) == (400, "invalid_json")


def test_drf_request_data_within_the_bound_parses():
    value = {"a": nested(MAX_JSON_DEPTH - 1)}
    raw = RequestFactory().post("/", json.dumps(value), "application/json")
    request = APIView().initialize_request(raw)

    assert request.data == value


@pytest.mark.parametrize("shape", ["open arrays", "closed arrays"])
def test_deep_json_typed_into_an_admin_form_is_a_form_error(admin_client, shape):
    add = reverse("admin:rewards_gpumodel_add")
    deep = deep_bodies(1024 * 1024)[shape].decode()
    form = {"pattern": "Deep", "weight": "1", "notes": "", "board_power_w": ""}

    refused = admin_client.post(add, {**form, "memory_sizes_gib": deep})
    accepted = admin_client.post(add, {**form, "memory_sizes_gib": "[40, 80]"})

    assert refused.status_code == 200
    assert "Enter a valid JSON." in refused.content.decode()
    assert accepted.status_code == 302
    assert GpuModel.objects.get(pattern="Deep").memory_sizes_gib == [40, 80]
