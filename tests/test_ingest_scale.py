"""Telemetry at scale: drains storing many batches at once, one drain message per slot at a
time, the remembered-agent path of the telemetry API, rollups redone by their periodic task, and
a database connection dropped under a request.

Batches go in through the HTTP API; drains and rollups run through their public functions and
Celery tasks, in this process.
"""

from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from contributors import tasks
from contributors.models import GPU, GpuHour, GpuMinute, Node, RollupDue, Sample, TelemetryBatch
from contributors.telemetry import rollups
from contributors.telemetry import store as ingest
from portal.schedule import beat_schedule
from tests.support.ingest import GPU_UUID, Agent, accepted, batch

pytestmark = pytest.mark.django_db

SECOND_GPU = "GPU-0c0ffee0-0000-4000-8000-000000000002"


def minutes_ago(minutes: float):
    return timezone.now() - timedelta(minutes=minutes)


def add_second_gpu(agent: Agent) -> None:
    """Report an inventory with a second GPU, as an agent does after a GPU was installed."""
    body = batch(0)
    body["gpus"] = [
        {"uuid": GPU_UUID, "name": "NVIDIA A100-SXM4-40GB", "memory_total_mib": 40960},
        {"uuid": SECOND_GPU, "name": "NVIDIA A100-SXM4-40GB", "memory_total_mib": 40960},
    ]
    assert agent.send(body).status_code == 202
    assert GPU.objects.filter(node_id=agent.node_id).count() == 2


def on_gpu(body: dict, gpu_uuid: str) -> dict:
    for sample in body["samples"]:
        sample["gpu_uuid"] = gpu_uuid
    return body


# --- drains -----------------------------------------------------------------------------------


def test_a_drain_stores_every_waiting_batch_in_one_go(django_capture_on_commit_callbacks):
    agent = Agent()
    rows = [
        accepted(agent, batch(5, minutes_ago(30 - 2 * i)), django_capture_on_commit_callbacks)
        for i in range(3)
    ]

    assert ingest.drain() == (3, 15)

    assert Sample.objects.count() == 15
    for row in rows:
        row.refresh_from_db()
        assert (row.status, row.attempts, row.samples) == (TelemetryBatch.Status.PROCESSED, 1, [])
    gpu = GPU.objects.get(uuid=GPU_UUID)
    newest = Sample.objects.order_by("-ts").first()
    assert (gpu.last_sample_at, gpu.last_memory_used_mib) == (newest.ts, newest.memory_used_mib)
    # Samples newer than any stored are rolled up in the same transaction.
    assert sum(GpuMinute.objects.values_list("samples", flat=True)) == 15
    assert sum(GpuHour.objects.values_list("samples", flat=True)) == 15
    assert not RollupDue.objects.exists()
    assert ingest.drain() == (0, 0)


def test_a_gpu_deleted_after_its_batch_was_accepted_fails_that_batch_alone(
    settings, django_capture_on_commit_callbacks
):
    settings.INGEST_MAX_ATTEMPTS = 2
    agent = Agent()
    add_second_gpu(agent)
    ingest.drain()
    good = accepted(agent, batch(4, minutes_ago(20)), django_capture_on_commit_callbacks)
    doomed = accepted(
        agent, on_gpu(batch(4, minutes_ago(20)), SECOND_GPU), django_capture_on_commit_callbacks
    )
    later = accepted(agent, batch(4, minutes_ago(10)), django_capture_on_commit_callbacks)
    GPU.objects.filter(uuid=SECOND_GPU).delete()

    assert ingest.drain() == (3, 8)

    for row in (good, later):
        row.refresh_from_db()
        assert row.status == TelemetryBatch.Status.PROCESSED
    doomed.refresh_from_db()
    assert (doomed.status, doomed.attempts) == (TelemetryBatch.Status.PENDING, 1)
    assert "no longer exist" in doomed.error
    assert Sample.objects.count() == 8
    # Counted again on the next drain, then left to an admin instead of failing every drain.
    assert ingest.drain() == (1, 0)
    doomed.refresh_from_db()
    assert (doomed.status, doomed.attempts) == (TelemetryBatch.Status.FAILED, 2)
    assert ingest.drain() == (0, 0)


def test_one_drain_message_per_slot_until_that_drain_has_looked_again(
    transactional_db,
    settings,
    parking_queue,
):
    settings.INGEST_DRAINS = 1
    agent = Agent()
    for i in range(3):
        assert agent.send(batch(2, minutes_ago(30 - i))).status_code == 202
    # Three batches, one message: the slot's drain will find all three.
    assert parking_queue() == 1

    assert tasks.drain_batches.apply(args=[0]).get() == 6
    assert not TelemetryBatch.objects.filter(status=TelemetryBatch.Status.PENDING).exists()

    # The drain cleared its flag before its last look, so the next batch asks for a new one.
    assert agent.send(batch(2, minutes_ago(5))).status_code == 202
    assert parking_queue() == 1


# --- the remembered-agent path ----------------------------------------------------------------


def test_a_remembered_agent_reports_with_a_single_statement(django_capture_on_commit_callbacks):
    agent = Agent()
    accepted(agent, batch(3, minutes_ago(20)), django_capture_on_commit_callbacks)

    body = batch(3, minutes_ago(10))
    with django_capture_on_commit_callbacks(), CaptureQueriesContext(connection) as queries:
        response = agent.send(body)

    assert (response.status_code, response.json()["accepted"]) == (202, 3)
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["INSERT"]
    assert agent.batch_row(body).sample_count == 3
    assert ingest.drain() == (2, 6)
    assert Sample.objects.count() == 6


def test_a_rotated_or_revoked_token_stops_at_once_though_remembered():
    agent = Agent()
    assert agent.send(batch(2, minutes_ago(20))).status_code == 202
    node = Node.objects.get(pk=agent.node_id)
    new_token = node.set_new_token()
    node.save()

    refused = agent.send(batch(2, minutes_ago(15)))  # the old token, as the agent remembers it
    assert (refused.status_code, refused.json()["error"]) == (401, "invalid_token")
    agent.token = new_token
    assert agent.send(batch(2, minutes_ago(14))).status_code == 202

    node.revoke()
    revoked = agent.send(batch(2, minutes_ago(10)))
    assert (revoked.status_code, revoked.json()["error"]) == (403, "token_revoked")
    assert TelemetryBatch.objects.filter(node_id=agent.node_id).count() == 2


def test_a_remembered_gpu_that_was_deleted_is_not_accepted():
    agent = Agent()
    add_second_gpu(agent)
    assert agent.send(batch(2, minutes_ago(20))).status_code == 202  # remembered with both GPUs
    GPU.objects.filter(uuid=SECOND_GPU).delete()

    response = agent.send(on_gpu(batch(2, minutes_ago(10)), SECOND_GPU))

    assert response.status_code == 202
    assert response.json()["accepted"] == 0
    assert {r["error"] for r in response.json()["rejected"]} == {"unknown_gpu"}


# --- rollups ---------------------------------------------------------------------------------


def test_older_samples_wait_for_the_periodic_task_newer_ones_do_not(
    django_capture_on_commit_callbacks,
):
    agent = Agent()
    start = (timezone.now() - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    newer = accepted(
        agent, batch(6, start + timedelta(minutes=1)), django_capture_on_commit_callbacks
    )
    ingest.ingest(newer.pk)
    assert sum(GpuMinute.objects.values_list("samples", flat=True)) == 6
    older = accepted(agent, batch(6, start), django_capture_on_commit_callbacks)
    ingest.ingest(older.pk)
    # Stored, but its minutes wait: a note spans the older samples.
    due = RollupDue.objects.get()
    assert (due.first_ts, due.last_ts) == (start, start + timedelta(seconds=50))
    assert sum(GpuMinute.objects.values_list("samples", flat=True)) == 6

    assert tasks.refresh_rollups.apply().get() == 1

    assert not RollupDue.objects.exists()
    assert sum(GpuMinute.objects.values_list("samples", flat=True)) == 12
    hour = GpuHour.objects.get()
    assert (hour.start, hour.samples) == (start, 12)
    # Twelve samples 10 s apart: eleven 10 s gaps and the last one's 30 s.
    assert hour.online_s == pytest.approx(140.0)
    schedule = beat_schedule()["refresh-rollups"]
    assert (schedule["task"], schedule["schedule"]) == ("contributors.refresh_rollups", 60.0)


def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("advisory locks, backend termination and storage settings are PostgreSQL's")


def other_connection() -> psycopg.Connection:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params, autocommit=True)


def test_only_one_rollup_run_works_at_a_time(transactional_db, parking_queue):
    postgres_only()
    agent = Agent()
    assert agent.send(batch(3, minutes_ago(20))).status_code == 202
    ingest.drain()
    assert agent.send(batch(3, minutes_ago(30))).status_code == 202  # older: a note
    ingest.drain()
    assert RollupDue.objects.count() == 1
    with other_connection() as other:
        other.execute("SELECT pg_advisory_lock(%s)", [rollups._LOCK_KEY])
        assert rollups.run() == 0  # another run holds the lock: this one leaves the notes
        assert RollupDue.objects.count() == 1
    assert rollups.run() == 1
    assert GpuMinute.objects.exists()


# --- a database that drops the connection -----------------------------------------------------


def test_a_dropped_database_connection_answers_503_not_500(
    transactional_db,
    parking_queue,
):
    postgres_only()
    agent = Agent()
    connection.ensure_connection()
    with other_connection() as other:
        other.execute("SELECT pg_terminate_backend(%s)", [connection.connection.info.backend_pid])

    response = agent.send(batch(2, minutes_ago(10)))

    assert response.status_code == 503
    assert response.json()["error"] == "database_unavailable"
    assert response["Retry-After"] == "5"
    connection.close()  # what Django does after such a request (not done by the test client)
    assert agent.send(batch(2, minutes_ago(5))).status_code == 202


# --- the agent API's own middleware stack (portal/wsgi.py) ------------------------------------


def wsgi(path: str, body: bytes = b"", token: str = "", method: str = "POST", query: str = ""):
    """Call the WSGI application gunicorn serves; (status, headers, body)."""
    import io
    import sys

    from portal.wsgi import application

    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "HTTP_HOST": "localhost",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_AUTHORIZATION": f"Bearer {token}",
    }
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer["status"], answer["headers"] = int(status.split()[0]), dict(headers)

    content = b"".join(application(environ, start_response))
    return answer["status"], answer["headers"], content


def test_agent_requests_skip_the_middleware_only_pages_need(
    transactional_db,
    parking_queue,
):
    import json

    agent = Agent()
    status, headers, content = wsgi(
        "/api/v1/agent/telemetry", json.dumps(batch(2, minutes_ago(5))).encode(), agent.token
    )
    assert status == 202, content
    assert headers["X-Content-Type-Options"] == "nosniff"  # security headers still apply
    assert "X-Frame-Options" not in headers and "Set-Cookie" not in headers
    status, _, _ = wsgi("/api/v1/agent/config", token=agent.token, method="GET", query="a=%00")
    assert status == 400  # NUL refused, as on every URL

    status, headers, _ = wsgi("/", method="GET")
    assert status == 200
    assert headers["X-Frame-Options"] == "DENY"  # pages get the whole stack


def test_a_batch_accepted_before_the_list_form_is_still_stored():
    """Batches keep samples as lists (`contributors.telemetry.validation.stored_sample`); ones
    accepted by an earlier release, with objects, may still be pending when a new worker
    starts."""
    agent = Agent()
    gpu = GPU.objects.get(uuid=GPU_UUID)
    ts = minutes_ago(3).replace(microsecond=0)
    TelemetryBatch.objects.create(
        node_id=agent.node_id,
        batch_id="7d4c2a56-5b8e-4d5e-9a55-1f0c6a1d9e01",
        samples=[
            {
                "gpu": gpu.pk,
                "ts": ts.isoformat(),
                "util": 55.5,
                "used": 2048,
                "total": 40960,
                "temp": 61.0,
                "power": None,
                "job": "job-7",
            }
        ],
        sample_count=1,
        response={},
    )

    assert ingest.drain() == (1, 1)

    stored = Sample.objects.get()
    assert (stored.gpu_id, stored.ts, stored.utilization_gpu_pct, stored.job_id) == (
        gpu.pk,
        ts,
        55.5,
        "job-7",
    )


def test_two_copies_of_a_reading_in_one_drain_store_the_first():
    """Samples are read in the order of their batches and lists, and (GPU, ts) keeps the first
    copy: in the table, in the live state and in the rollups alike."""
    agent = Agent()
    gpu = GPU.objects.get(uuid=GPU_UUID)
    ts = minutes_ago(3).replace(microsecond=0)
    later = ts + timedelta(seconds=10)
    for number, (util, job) in enumerate([(10.0, "first"), (90.0, "second")]):
        TelemetryBatch.objects.create(
            node_id=agent.node_id,
            batch_id=f"7d4c2a56-5b8e-4d5e-9a55-1f0c6a1d9e1{number}",
            samples=[
                [gpu.pk, ts.isoformat(), util, 2048, 40960, 61.0, None, job],
                [gpu.pk, later.isoformat(), util, 1024, 40960, None, 300.0, job],
            ],
            sample_count=2,
            response={},
        )

    assert ingest.drain() == (2, 4)

    stored = list(Sample.objects.order_by("ts").values_list("utilization_gpu_pct", "job_id"))
    assert stored == [(10.0, "first"), (10.0, "first")]
    assert sum(GpuMinute.objects.values_list("samples", flat=True)) == 2
    assert sum(GpuMinute.objects.values_list("sum_util", flat=True)) == 20.0
    gpu.refresh_from_db()
    assert (gpu.last_sample_at, gpu.last_job_id) == (later, "first")
    assert (
        Sample.objects.get(ts=later).temperature_c,
        Sample.objects.get(ts=later).power_w,
    ) == (None, 300.0)


def test_tables_a_drain_updates_leave_room_for_updates_in_place():
    """A GPU's live state, a node's last report, the current minute, hour and usage
    accumulator are updated many times each: room on their pages lets PostgreSQL do it
    without a new entry in every index (migration 0012)."""
    postgres_only()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, reloptions FROM pg_class WHERE relname = ANY(%s) ORDER BY relname",
            [
                [
                    "contributors_gpu",
                    "contributors_gpuhour",
                    "contributors_gpuminute",
                    "contributors_node",
                    "rewards_usageaccumulator",
                ]
            ],
        )
        rows = dict(cursor.fetchall())
    assert rows == {
        "contributors_gpu": ["fillfactor=70"],
        "contributors_gpuhour": ["fillfactor=70"],
        "contributors_gpuminute": ["fillfactor=80"],
        "contributors_node": ["fillfactor=70"],
        "rewards_usageaccumulator": ["fillfactor=70"],
    }


def test_the_same_inventory_again_keeps_the_single_statement_a_new_one_is_registered(
    django_capture_on_commit_callbacks,
):
    agent = Agent()
    inventory = [{"uuid": GPU_UUID, "name": "NVIDIA A100-SXM4-40GB", "memory_total_mib": 40960}]
    first = batch(2, minutes_ago(20))
    first["gpus"] = inventory
    accepted(agent, first, django_capture_on_commit_callbacks)

    again = batch(2, minutes_ago(15))
    again["gpus"] = inventory
    with django_capture_on_commit_callbacks(), CaptureQueriesContext(connection) as queries:
        assert agent.send(again).status_code == 202
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["INSERT"]

    grown = on_gpu(batch(2, minutes_ago(10)), SECOND_GPU)
    grown["gpus"] = [
        *inventory,
        {"uuid": SECOND_GPU, "name": "NVIDIA A100-SXM4-40GB", "memory_total_mib": 40960},
    ]
    with django_capture_on_commit_callbacks():
        response = agent.send(grown)
    assert (response.status_code, response.json()["accepted"]) == (202, 2)
    assert GPU.objects.filter(node_id=agent.node_id).count() == 2


def test_a_throttled_token_that_is_not_valid_hears_401_not_429(settings):
    settings.TELEMETRY_RATE_PER_MIN = 1
    agent = Agent()
    assert agent.send(batch(1, minutes_ago(20))).status_code == 202
    throttled = agent.send(batch(1, minutes_ago(19)))
    assert (throttled.status_code, throttled.json()["error"]) == (429, "throttled")

    agent.token = agent.token[:-4] + "zzzz"
    for _ in range(2):
        refused = agent.send(batch(1, minutes_ago(18)))
        assert (refused.status_code, refused.json()["error"]) == (401, "invalid_token")
