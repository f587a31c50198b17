"""GET /metrics (portal/metrics.py) as Prometheus scrapes it, and the logs as JSON lines.

In-process tests read this process's own counters, which earlier tests moved: they compare a
scrape before and after. The multiprocess test runs gunicorn and a Celery worker sharing a
PROMETHEUS_MULTIPROC_DIR, as a deployment does.
"""

import ipaddress
import json
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from contributors.models import GPU, EnrollmentCode, TelemetryBatch
from contributors.signin import contributor_for_sign_in
from contributors.telemetry import store
from tests.support import agent_api
from tests.support.brokers import purge_queues, unique_queue
from tests.support.ingest import Agent, accepted, age, batch
from tests.support.processes import (
    WebProcess,
    free_port,
    http_request,
    portal_env,
    start_worker,
    wait_until,
)
from tests.support.rewards import A1, A2, H100, Rig, epoch_start, gpu, ingest_all, samples, settle
from tests.support.siwe import ALICE

BASE_DIR = Path(__file__).resolve().parent.parent
TOKEN = "metrics-token-for-tests-0123456789"
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
TELEMETRY_ROUTE = "api/v1/agent/telemetry"


@pytest.fixture
def token(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = []
    return TOKEN


def scrape(client: Client | None = None) -> dict[tuple[str, frozenset], float]:
    """Every sample of a scrape with the right token: (name, labels) -> value."""
    response = (client or Client()).get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.content
    return parse(response.content.decode())


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def routes(samples: dict) -> set[str]:
    counted = [labels for name, labels in samples if name == "omnitensor_http_requests_total"]
    return {dict(labels)["route"] for labels in counted}


pytestmark = pytest.mark.django_db


# --- who may scrape ---------------------------------------------------------------------------


def test_metrics_do_not_exist_without_a_token_setting(settings, client):
    settings.METRICS_TOKEN = ""

    response = client.get("/metrics", headers={"Authorization": "Bearer "})

    assert response.status_code == 404
    assert b"omnitensor_" not in response.content


@pytest.mark.parametrize(
    "authorization",
    [None, f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN, "Bearer é"],
    ids=["none", "longer", "shorter", "other-scheme", "no-scheme", "non-ascii"],
)
def test_missing_or_wrong_token_is_refused_and_nothing_leaks(token, client, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}

    response = client.get("/metrics", headers=headers)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"omnitensor_" not in response.content
    assert b"# HELP" not in response.content


def test_right_token_gets_prometheus_text_with_every_metric(token, client):
    client.get("/healthz")

    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200
    assert response["Content-Type"] == PROMETHEUS_TEXT
    assert "no-cache" in response["Cache-Control"]
    names = {family.name for family in text_string_to_metric_families(response.content.decode())}
    assert {
        "omnitensor_http_requests",
        "omnitensor_http_request_duration_seconds",
        "omnitensor_telemetry_batches_accepted",
        "omnitensor_telemetry_batches_stored",
        "omnitensor_telemetry_samples_stored",
        "omnitensor_telemetry_drain_lag_seconds",
        "omnitensor_telemetry_pending_batches",
        "omnitensor_telemetry_failed_batches",
        "omnitensor_rollup_backlog",
        "omnitensor_settlement_duration_seconds",
        "omnitensor_verification_challenges_decided",
        "omnitensor_last_epoch_held_out",
        "omnitensor_claims",
        "omnitensor_metrics_database_up",
    } <= names
    samples = parse(response.content.decode())
    assert value(samples, "omnitensor_metrics_database_up") == 1
    assert value(samples, "omnitensor_claims", status="issued") == 0
    assert (
        value(
            samples, "omnitensor_http_requests_total", route="healthz", method="GET", status="2xx"
        )
        >= 1
    )


def test_only_allowed_networks_may_scrape(token, settings):
    settings.METRICS_ALLOWED_NETWORKS = [ipaddress.ip_network("10.0.0.0/8")]
    auth = {"Authorization": f"Bearer {token}"}

    outside = Client().get("/metrics", headers=auth)  # the test client is 127.0.0.1
    inside = Client(REMOTE_ADDR="10.1.2.3").get("/metrics", headers=auth)
    mapped = Client(REMOTE_ADDR="::ffff:10.1.2.3").get("/metrics", headers=auth)

    assert outside.status_code == 403
    assert b"omnitensor_" not in outside.content
    assert (inside.status_code, mapped.status_code) == (200, 200)


# --- what is counted --------------------------------------------------------------------------


def test_posted_and_drained_batch_moves_the_counters_and_gauges(
    token, django_capture_on_commit_callbacks
):
    agent = Agent()
    before = scrape()

    row = accepted(agent, batch(25), django_capture_on_commit_callbacks)
    age(row, 90)
    waiting = scrape()
    store.drain()
    after = scrape()

    accepted_total = "omnitensor_telemetry_batches_accepted_total"
    assert value(waiting, accepted_total) == value(before, accepted_total) + 1
    assert value(waiting, "omnitensor_telemetry_pending_batches") == 1
    assert 90 <= value(waiting, "omnitensor_telemetry_drain_lag_seconds") < 120
    requests = {"route": TELEMETRY_ROUTE, "method": "POST", "status": "2xx"}
    assert value(waiting, "omnitensor_http_requests_total", **requests) == (
        value(before, "omnitensor_http_requests_total", **requests) + 1
    )

    for name, added in [
        ("omnitensor_telemetry_batches_stored_total", 1),
        ("omnitensor_telemetry_samples_stored_total", 25),
    ]:
        assert value(after, name) == value(waiting, name) + added, name
    assert value(after, "omnitensor_telemetry_pending_batches") == 0
    assert value(after, "omnitensor_telemetry_drain_lag_seconds") == 0
    assert TelemetryBatch.objects.get(pk=row.pk).status == TelemetryBatch.Status.PROCESSED


def test_a_replayed_batch_is_not_counted_as_accepted_again(
    token, django_capture_on_commit_callbacks
):
    agent = Agent()
    body = batch(3)
    accepted(agent, body, django_capture_on_commit_callbacks)
    before = scrape()

    assert agent.send(body).status_code == 200

    name = "omnitensor_telemetry_batches_accepted_total"
    assert value(scrape(), name) == value(before, name)


def test_random_paths_do_not_add_label_values(token):
    client = Client()
    before = scrape(client)
    paths = [f"/{uuid.uuid4().hex}" for _ in range(25)]
    paths += [f"/api/v1/agent/proof/{uuid.uuid4().hex}" for _ in range(25)]

    for path in paths:
        assert client.get(path).status_code == 404
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})

    after = parse(response.content.decode())
    assert routes(after) - routes(before) <= {"unmatched", "api/v1/agent/proof/<str:name>"}
    unmatched = {"route": "unmatched", "method": "GET", "status": "4xx"}
    proof = {"route": "api/v1/agent/proof/<str:name>", "method": "GET", "status": "4xx"}
    for labels in (unmatched, proof):
        assert value(after, "omnitensor_http_requests_total", **labels) == (
            value(before, "omnitensor_http_requests_total", **labels) + 25
        )
    text = response.content.decode()
    assert not any(path.rsplit("/", 1)[1] in text for path in paths)


def test_settling_an_epoch_is_timed_and_its_held_out_gpus_counted(token):
    alice = contributor_for_sign_in(ALICE.address)
    start = epoch_start()
    rig = Rig(alice, [gpu(A1, H100), gpu(A2, H100)])
    GPU.objects.filter(uuid=A1).update(enabled=False)
    rig.report(samples(A1, start, seconds=range(0, 600, 10)) + samples(A2, start))
    ingest_all()
    before = scrape()

    settle(start)

    after = scrape()
    count = "omnitensor_settlement_duration_seconds_count"
    assert value(after, count) == value(before, count) + 1
    assert value(after, "omnitensor_settlement_duration_seconds_sum") > value(
        before, "omnitensor_settlement_duration_seconds_sum"
    )
    held_out = "omnitensor_last_epoch_held_out"
    assert value(after, held_out, reason="disabled") == 1
    assert value(after, held_out, reason="flagged") == 0
    end = start + timedelta(hours=1)
    assert value(after, "omnitensor_last_epoch_end_timestamp_seconds") == end.timestamp()


# --- several processes ------------------------------------------------------------------------


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_web_and_worker_processes_add_up_in_multiprocess_mode(tmp_path, reaper):
    queue = unique_queue("metrics")
    reaper.add(purge_queues, queue)
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = portal_env(
        queue, METRICS_TOKEN=TOKEN, PROMETHEUS_MULTIPROC_DIR=str(shared), LOG_FORMAT="json"
    )
    web = WebProcess(free_port(), tmp_path / "web.log", env).start()
    reaper.add(web.kill)
    worker = start_worker(reaper, queue, tmp_path / "worker.log", env)

    owner = contributor_for_sign_in(ALICE.address)
    enrolled = http_request(
        f"{web.url}/api/v1/agent/enroll",
        "POST",
        {
            "enrollment_code": EnrollmentCode.issue(owner)[1],
            "hostname": "rig-1",
            "agent_version": "0.1.0",
            "gpus": [agent_api.H100],
        },
    )
    assert enrolled.status == 201, enrolled.body
    node_token = enrolled.json()["node_token"]
    body = agent_api.batch([agent_api.sample(agent_api.H100["uuid"])])
    posted = http_request(f"{web.url}/api/v1/agent/telemetry", "POST", body, node_token)
    assert posted.status == 202, posted.body

    def stored():
        reply = http_request(f"{web.url}/metrics", token=TOKEN)
        assert reply.status == 200, reply.body
        samples = parse(reply.body.decode())
        return samples if value(samples, "omnitensor_telemetry_samples_stored_total") else None

    samples = wait_until(stored, 60, "the drain was never counted", web.log_path, worker.log_path)
    # The request was counted by one of gunicorn's workers, the drain by Celery's pool process;
    # every scrape, whichever web worker answers it, adds them up.
    assert value(samples, "omnitensor_telemetry_batches_accepted_total") == 1
    assert value(samples, "omnitensor_telemetry_batches_stored_total") == 1
    assert value(samples, "omnitensor_telemetry_samples_stored_total") == 1
    telemetry = {"route": TELEMETRY_ROUTE, "method": "POST", "status": "2xx"}
    assert value(samples, "omnitensor_http_requests_total", **telemetry) == 1
    assert value(samples, "omnitensor_telemetry_pending_batches") == 0
    # The worker logs JSON lines too (Celery's start-up banner aside, which it prints itself).
    records = [json.loads(line) for line in worker.output().splitlines() if line.startswith("{")]
    received = [r for r in records if r["logger"] == "celery.worker.strategy"]
    assert any("drain_batches" in r["message"] and r["level"] == "INFO" for r in received)


# --- logs as JSON lines -----------------------------------------------------------------------

LOG_SOME_RECORDS = """
import logging
logging.getLogger("portal.metrics_test").warning("first %s", "line")
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("portal.metrics_test").exception("second\\nrecord")
"""


def run_shell(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
        cwd=BASE_DIR,
        env={**portal_env("unused"), "VAR_DIR": str(tmp_path / "var"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_json_log_format_writes_one_object_per_line(tmp_path):
    result = run_shell(LOG_SOME_RECORDS, tmp_path, LOG_FORMAT="json")

    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]
    ours = [r for r in records if r["logger"] == "portal.metrics_test"]
    assert [(r["level"], r["message"]) for r in ours] == [
        ("WARNING", "first line"),
        ("ERROR", "second\nrecord"),
    ]
    assert "ZeroDivisionError" in ours[1]["exc_info"]
    assert all("time" in r for r in ours)


def test_plain_log_format_stays_the_default(tmp_path):
    result = run_shell(LOG_SOME_RECORDS, tmp_path)

    assert result.returncode == 0, result.stderr
    assert "WARNING portal.metrics_test: first line" in result.stderr
    assert not any(line.startswith("{") for line in result.stderr.splitlines())


def test_unknown_log_format_stops_the_process(tmp_path):
    result = run_shell(
        "from django.conf import settings; settings.LOGGING", tmp_path, LOG_FORMAT="xml"
    )

    assert result.returncode != 0
    assert "LOG_FORMAT must be plain or json" in result.stderr
