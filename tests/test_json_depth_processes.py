"""No body crashes a process, seen from outside: JSON nested as deep as an attacker sends it,
to a real gunicorn, leaves the same worker answering; every web and worker process, and
manage.py, runs with a sane recursion limit (tests/test_json_depth.py has the endpoints through
Django's test client).

Importing eth-account (py_ecc) raised the limit to 100,000; `json.loads` of 100,000 `[` then
overflowed the C stack, and the worker died with SIGSEGV on an unauthenticated request.
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
from pathlib import Path

import pytest

from contributors.models import Contributor, EnrollmentCode
from portal.lib.recursion import RECURSION_LIMIT
from tests.support.agent_api import ENROLL, JOBS, TELEMETRY, h100, scheduler_token
from tests.support.brokers import purge_queues
from tests.support.deep_json import deep_bodies
from tests.support.processes import (
    BASE_DIR,
    database_url_for_test_db,
    descendants,
    free_port,
    tail,
    wait_for,
)
from tests.support.siwe import ALICE, make_message, sign

pytestmark = pytest.mark.django_db

WALLETS = "/api/v1/me/wallets"
VERIFY = "/auth/verify"


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
