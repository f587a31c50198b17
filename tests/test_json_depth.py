"""No body crashes a process: JSON nested deeper than `jsonbody.MAX_JSON_DEPTH` is refused
with 400 `invalid_json` before it is parsed, on every endpoint that takes a JSON body, and
every web and worker process runs with a sane recursion limit.

Importing eth-account (py_ecc) raised the limit to 100,000; `json.loads` of 100,000 `[` then
overflowed the C stack, and the worker died with SIGSEGV on an unauthenticated request. The
last tests send such bodies to a real gunicorn and see the same worker answer afterwards.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from contextlib import suppress
from http.cookiejar import CookieJar
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client, RequestFactory
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from contributors.models import Contributor, EnrollmentCode
from portal.api_errors import ApiError
from portal.jsonbody import MAX_JSON_DEPTH, nests_too_deep
from portal.recursion import RECURSION_LIMIT
from rewards.models import GpuModel
from tests.conftest import BASE_DIR, database_url_for_test_db, wait_for
from tests.siwe_helpers import ALICE, make_message, sign
from tests.support.agent_api import ENROLL, JOBS, TELEMETRY, batch, h100, sample
from tests.support.processes import descendants, free_port, purge_queues, tail

pytestmark = pytest.mark.django_db

WALLETS = "/api/v1/me/wallets"
VERIFY = "/auth/verify"
ATTACK_DEPTH = 100_000


def deep_bodies(max_bytes: int) -> dict[str, bytes]:
    """The attack in its shapes, each as deep as fits in `max_bytes` (at most ATTACK_DEPTH)."""
    arrays = min(ATTACK_DEPTH, max_bytes // 2)
    objects = min(ATTACK_DEPTH, max_bytes // len(b'{"a":'))
    return {
        "open arrays": b"[" * min(ATTACK_DEPTH, max_bytes),
        "closed arrays": b"[" * arrays + b"]" * arrays,
        "open objects": b'{"a":' * objects,
    }


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


def scheduler_token() -> str:
    out = StringIO()
    call_command("create_service_token", "--scope", "scheduler", stdout=out)
    return out.getvalue().split()[-1]


def signed_in_browser() -> Client:
    """A page's client: signed in as ALICE through /auth/verify, echoing its CSRF cookie."""
    browser = Client(enforce_csrf_checks=True)
    nonce = browser.get("/auth/nonce").json()["nonce"]
    message = make_message(ALICE, nonce)
    response = post_raw(
        browser,
        VERIFY,
        json.dumps({"message": message, "signature": sign(ALICE, message)}).encode(),
    )
    assert response.status_code == 200, response.content
    return browser


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
    browser = signed_in_browser()

    assert_refused_as_too_deep(post_raw(browser, WALLETS, deep_bodies(16 * 1024)[shape]))


def test_deep_demo_sign_in_is_invalid_json(settings):
    settings.DEBUG = True
    settings.DEMO_FLEET = True
    browser = Client(enforce_csrf_checks=True)
    browser.get("/auth/nonce")

    assert_refused_as_too_deep(post_raw(browser, "/auth/demo", b'{"name":' * 120))


def test_deep_claim_transaction_is_invalid_json():
    browser = signed_in_browser()
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


# --- Real processes ---------------------------------------------------------------------------

# A gunicorn config that has the worker write, after each request, its pid and its recursion
# limit: what the process that served the request was, seen from inside.
GUNICORN_PROBE = """
import json, os, sys

def post_request(worker, req, environ, resp):
    with open(os.environ["RECURSION_PROBE"], "a") as probe:
        probe.write(json.dumps({"pid": os.getpid(), "limit": sys.getrecursionlimit()}) + "\\n")
"""


def portal_env(tmp_path: Path) -> dict:
    return {
        **os.environ,
        "DEBUG": "true",
        "DATABASE_URL": database_url_for_test_db(),
        "PYTHONUNBUFFERED": "1",
        "RECURSION_PROBE": str(tmp_path / "probe.jsonl"),
        "ENROLL_RATE_PER_MIN": "10000",
        "BAD_TOKEN_RATE_PER_MIN": "10000",
        "SIWE_VERIFY_RATE_PER_MIN": "10000",
        "SIWE_NONCE_RATE_PER_MIN": "10000",
        "TELEMETRY_RATE_PER_MIN": "10000",
    }


class Gunicorn:
    """`gunicorn portal.wsgi` with one sync worker, as the Procfile runs it but smaller."""

    def __init__(self, tmp_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "gunicorn.log"
        self.probe = tmp_path / "probe.jsonl"
        config = tmp_path / "probe_config.py"
        config.write_text(GUNICORN_PROBE)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "gunicorn", "portal.wsgi", "--config", str(config),
                    "--bind", f"127.0.0.1:{self.port}", "--workers", "1", "--timeout", "60",
                ],
                cwd=BASE_DIR, env=portal_env(tmp_path), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        wait_for(self._answers, 60, message=f"gunicorn never answered:\n{tail(self.log)}")

    def _answers(self) -> bool:
        assert self.proc.poll() is None, tail(self.log)
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=5):  # noqa: S310 - loopback
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def workers(self) -> list[int]:
        return sorted(descendants(self.proc.pid))

    def stop(self) -> None:
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


@pytest.fixture
def gunicorn(tmp_path):
    server = Gunicorn(tmp_path)
    yield server
    server.stop()


def http(opener, url: str, body: bytes | None = None, headers: dict | None = None):
    """(status, JSON answer) of a request; (None, the error) when the connection broke, as it
    does when the worker dies under the request."""
    request = urllib.request.Request(url, data=body, headers=headers or {})  # noqa: S310
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with opener.open(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    except OSError as exc:
        return None, repr(exc)


def csrf_of(jar: CookieJar) -> str:
    return next(cookie.value for cookie in jar if cookie.name == "csrftoken")


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_deep_bodies_leave_the_same_gunicorn_worker_answering(gunicorn):
    plain = urllib.request.build_opener()
    owner = Contributor.objects.create(username="deep-rig-owner")
    status, enrolled = http(
        plain,
        gunicorn.url + ENROLL,
        json.dumps(
            {
                "enrollment_code": EnrollmentCode.issue(owner)[1],
                "hostname": "rig-deep",
                "agent_version": "test",
                "gpus": [h100("deep-gunicorn")],
            }
        ).encode(),
    )
    assert status == 201, enrolled
    jar = CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    nonce = http(browser, gunicorn.url + "/auth/nonce")[1]["nonce"]
    host = f"127.0.0.1:{gunicorn.port}"
    message = make_message(ALICE, nonce, domain=host, uri=f"http://{host}/")
    signed_in = json.dumps({"message": message, "signature": sign(ALICE, message)}).encode()
    status, answer = http(browser, gunicorn.url + VERIFY, signed_in, {"X-CSRFToken": csrf_of(jar)})
    assert status == 200, answer
    workers = gunicorn.workers()
    assert len(workers) == 1

    node = {"Authorization": f"Bearer {enrolled['node_token']}"}
    stranger = {"Authorization": f"Bearer {uuid.uuid4().hex}"}
    scheduler = {"Authorization": f"Bearer {scheduler_token()}"}
    page = {"X-CSRFToken": csrf_of(jar)}
    attacks = [
        (plain, ENROLL, {}, 256 * 1024, 400),
        (plain, TELEMETRY, stranger, 1024 * 1024, 401),
        (plain, TELEMETRY, node, 1024 * 1024, 400),
        (plain, JOBS, scheduler, 16 * 1024, 400),
        (browser, VERIFY, page, 16 * 1024, 400),
        (browser, WALLETS, page, 16 * 1024, 400),
    ]
    answers = {}
    for opener, path, headers, max_bytes, expected in attacks:
        for shape, body in deep_bodies(max_bytes).items():
            status, answer = http(opener, gunicorn.url + path, body, headers)
            answers[(path, headers.get("Authorization", "")[:12], shape)] = status, answer
            assert status == expected, (path, shape, answer, tail(gunicorn.log))
            error = "invalid_token" if expected == 401 else "invalid_json"
            assert answer["error"] == error

    assert http(plain, gunicorn.url + "/healthz")[0] in (200, 503)
    assert http(browser, gunicorn.url + "/api/v1/me")[0] == 200
    assert gunicorn.workers() == workers, tail(gunicorn.log)
    served = [json.loads(line) for line in gunicorn.probe.read_text().splitlines()]
    assert {report["pid"] for report in served} == set(workers)
    assert {report["limit"] for report in served} == {RECURSION_LIMIT}
    assert "SIGSEGV" not in gunicorn.log.read_text()
    assert "Booting worker" not in gunicorn.log.read_text().split("Booting worker", 1)[1]


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_a_celery_worker_runs_with_a_sane_recursion_limit(tmp_path):
    from portal.celery_app import app
    from tests.support.recursion_probe import PROBE_TASK

    queue = f"test-depth-{uuid.uuid4().hex[:10]}"
    report = tmp_path / "worker.json"
    with open(tmp_path / "worker.log", "ab") as log:
        worker = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "portal", "worker",
                "--include", "tests.support.recursion_probe", "--queues", queue,
                "--concurrency", "1", "--without-gossip", "--without-mingle",
                "--without-heartbeat", "--hostname", f"{queue}@%h",
            ],
            cwd=BASE_DIR, env=portal_env(tmp_path), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        app.send_task(PROBE_TASK, args=[str(report)], queue=queue)
        wait_for(report.exists, 90, message=tail(tmp_path / "worker.log"))
        time.sleep(0.1)  # the file is written in one call; let it land whole
        probed = json.loads(report.read_text())
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        purge_queues(queue)

    assert probed["pid"] != os.getpid()
    assert probed["limit"] == RECURSION_LIMIT


def test_manage_py_runs_with_a_sane_recursion_limit():
    shown = subprocess.run(
        [
            sys.executable, "manage.py", "shell", "-c",
            "import sys, eth_account; from contributors import signin; "
            "print(sys.getrecursionlimit())",
        ],
        cwd=BASE_DIR, env={**os.environ, "DEBUG": "true"}, capture_output=True, text=True,
        timeout=120, check=True,
    )  # fmt: skip

    assert int(shown.stdout.split()[-1]) == RECURSION_LIMIT


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
