"""Rollups, the series API and retention: charts of any range without scanning raw samples."""

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from contributors import retention
from contributors.models import GPU, EnrollmentCode, GpuHour, GpuMinute, Sample, TelemetryBatch
from contributors.series import MAX_RAW_POINTS
from contributors.telemetry import rollups
from contributors.telemetry import store as ingest
from tests.support.siwe import ALICE, BOB, sign_in

pytestmark = pytest.mark.django_db

UUID = "GPU-aaaaaaaa-0000-4000-8000-000000000001"
INVENTORY = [{"uuid": UUID, "name": "NVIDIA L40S", "memory_total_mib": 46068}]


@pytest.fixture
def owner():
    client = Client()
    assert sign_in(client, ALICE).status_code == 200
    return client


@pytest.fixture
def token(owner):
    from contributors.models import Contributor

    _, code = EnrollmentCode.issue(Contributor.objects.get(username=ALICE.address))
    body = {"enrollment_code": code, "hostname": "rig", "gpus": INVENTORY}
    response = Client().post("/api/v1/agent/enroll", body, content_type="application/json")
    return response.json()["node_token"]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def post(token: str, samples: list[dict], roll_up: bool = True) -> None:
    """Post a batch, store it as a worker would, and (unless told not to) redo the rollups as
    the periodic task does."""
    body = {"batch_id": str(uuid.uuid4()), "sent_at": iso(timezone.now()), "samples": samples}
    response = Client().post(
        "/api/v1/agent/telemetry",
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 202, response.content
    assert response.json()["rejected"] == []
    ingest.ingest(TelemetryBatch.objects.get(batch_id=body["batch_id"]).pk)
    if roll_up:
        rollups.run()


def sample(ts: datetime, util=50.0, used=1000, temp=60.0, power=200.0) -> dict:
    return {
        "gpu_uuid": UUID,
        "ts": iso(ts),
        "utilization_gpu_pct": util,
        "memory_used_mib": used,
        "memory_total_mib": 46068,
        "temperature_c": temp,
        "power_w": power,
    }


def minute_rows():
    return {
        row.start: (row.samples, row.online_s, row.sum_util, row.max_util, row.n_util)
        for row in GpuMinute.objects.order_by("start")
    }


def base_time() -> datetime:
    # A whole hour two hours ago, so every sample is inside the accepted window.
    return (timezone.now() - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)


def test_minute_and_hour_rollups_match_hand_computed_coverage(token):
    t0 = base_time()
    # 00:00, 00:10, 00:20, 00:50 (a 30 s gap: covered fully), 01:30 (a 40 s gap: 30 s covered)
    times = [t0 + timedelta(seconds=s) for s in (0, 10, 20, 50, 90)]
    post(token, [sample(t, util=u) for t, u in zip(times, (10, 20, 30, None, 90), strict=True)])

    rows = minute_rows()
    # Minute 0: 10 + 10 + 30 + 10 (the 00:50 sample covers 00:50-01:20) = 60 s online.
    # Minute 1: 20 s spilled from 00:50, then 01:30-02:00 = 50 s.
    assert rows[t0] == (4, 60.0, 60.0, 30.0, 3)
    assert rows[t0 + timedelta(minutes=1)] == (1, 50.0, 90.0, 90.0, 1)
    hour = GpuHour.objects.get()
    assert (hour.start, hour.samples, hour.online_s, hour.sum_util, hour.max_util) == (
        t0, 5, 110.0, 150.0, 90.0,
    )  # fmt: skip


def test_rollups_do_not_depend_on_arrival_order(token):
    t0 = base_time()
    times = [t0 + timedelta(seconds=s) for s in (0, 10, 20, 50, 90)]
    post(token, [sample(times[4])])
    post(token, [sample(t) for t in times[2:4]])
    post(token, [sample(t) for t in times[:2]])
    post(token, [sample(t) for t in times])  # all again: duplicates change nothing

    assert [row[:2] for row in minute_rows().values()] == [(4, 60.0), (1, 50.0)]
    assert GpuHour.objects.get().online_s == 110.0
    assert Sample.objects.count() == 5


def reference_minutes(times: list[datetime], gap: float = 30.0) -> dict:
    """Straight from DESIGN.md: each sample covers [ts, min(next, ts + gap)), cut into minutes."""
    out: dict[datetime, float] = {}
    ordered = sorted(set(times))
    for index, ts in enumerate(ordered):
        end = ts + timedelta(seconds=gap)
        if index + 1 < len(ordered):
            end = min(end, ordered[index + 1])
        second = ts
        while second < end:
            minute = second.replace(second=0, microsecond=0)
            step = min(end, minute + timedelta(minutes=1))
            out[minute] = out.get(minute, 0.0) + (step - second).total_seconds()
            second = step
    return out


@hsettings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=3 * 3600), min_size=1, max_size=40),
    splits=st.integers(min_value=1, max_value=5),
    seed=st.integers(min_value=0, max_value=1000),
    roll_up_each_time=st.booleans(),
)
def test_rollups_equal_the_reference_whatever_the_batching(
    token, offsets, splits, seed, roll_up_each_time
):
    GpuMinute.objects.all().delete()
    GpuHour.objects.all().delete()
    Sample.objects.all().delete()
    GPU.objects.update(last_sample_at=None)  # a GPU with no samples yet, for every example
    t0 = base_time() - timedelta(hours=2)
    times = [t0 + timedelta(seconds=o) for o in offsets]
    shuffled = [sample(t) for t in times]
    random.Random(seed).shuffle(shuffled)
    for index in range(splits):
        part = shuffled[index::splits]
        if part:
            post(token, part, roll_up=roll_up_each_time)
    rollups.run(max_spans=2)  # what is left, a few notes per transaction
    expected = reference_minutes(times)
    got = {row.start: row.online_s for row in GpuMinute.objects.all()}
    assert got == pytest.approx(expected)
    hours: dict[datetime, float] = {}
    for minute, seconds in expected.items():
        key = minute.replace(minute=0)
        hours[key] = hours.get(key, 0.0) + seconds
    assert {h.start: h.online_s for h in GpuHour.objects.all()} == pytest.approx(hours)
    assert sum(h.samples for h in GpuHour.objects.all()) == len(set(times))


def test_series_ranges_read_the_right_source(owner, token):
    now = timezone.now()
    post(token, [sample(now - timedelta(minutes=m)) for m in (50, 5, 1)])

    raw = owner.get(f"/api/v1/me/gpus/{UUID}/series", {"range": "1h"}).json()
    assert (raw["uuid"], raw["range"], raw["source"]) == (UUID, "1h", "raw")
    assert [p["utilization_gpu_pct"] for p in raw["points"]] == [50.0, 50.0, 50.0]
    minutes = owner.get(f"/api/v1/me/gpus/{UUID}/series", {"range": "24h"}).json()
    assert (minutes["source"], minutes["resolution_s"]) == ("minute", 60)
    # A sample's 30 s of coverage may spill into the next minute: that minute is online
    # but holds no sample, so it has no averages.
    with_samples = [p for p in minutes["points"] if p["samples"]]
    assert [p["utilization_gpu_pct"] for p in with_samples] == [50.0, 50.0, 50.0]
    assert all(p["utilization_gpu_pct"] is None for p in minutes["points"] if not p["samples"])
    assert sum(p["online_s"] for p in minutes["points"]) == pytest.approx(90.0)
    hours = owner.get(f"/api/v1/me/gpus/{UUID}/series", {"range": "7d"}).json()
    assert hours["resolution_s"] == 3600
    assert sum(p["samples"] for p in hours["points"]) == 3


def test_series_rejects_a_bad_range_and_other_peoples_gpus(owner, token):
    assert owner.get(f"/api/v1/me/gpus/{UUID}/series", {"range": "2y"}).status_code == 400
    assert owner.get(f"/api/v1/me/gpus/{UUID}/series", {"range": "2y"}).json()["error"] == (
        "invalid_range"
    )
    bob = Client()
    sign_in(bob, BOB)
    assert bob.get(f"/api/v1/me/gpus/{UUID}/series", {"range": "1h"}).status_code == 404
    assert Client().get(f"/api/v1/me/gpus/{UUID}/series").status_code in (401, 403)


def fill_ninety_days(gpu: GPU, now: datetime) -> None:
    hour0 = now.replace(minute=0, second=0, microsecond=0)
    minute0 = now.replace(second=0, microsecond=0)
    GpuHour.objects.bulk_create(
        GpuHour(gpu=gpu, start=hour0 - timedelta(hours=h), samples=360, online_s=3600,
                n_util=360, sum_util=360 * 40.0, max_util=90, sum_mem=360 * 1000.0, max_mem=2000)
        for h in range(90 * 24)
    )  # fmt: skip
    GpuMinute.objects.bulk_create(
        GpuMinute(gpu=gpu, start=minute0 - timedelta(minutes=m), samples=6, online_s=60,
                  n_util=6, sum_util=240.0, max_util=90, sum_mem=6000.0, max_mem=2000)
        for m in range(24 * 60)
    )  # fmt: skip
    Sample.objects.bulk_create(
        Sample(gpu=gpu, ts=now - timedelta(seconds=10 * i), utilization_gpu_pct=40,
               memory_used_mib=1000, memory_total_mib=46068)
        for i in range(2 * 360)  # two hours of raw samples: one beyond the chart's hour
    )  # fmt: skip


@pytest.mark.parametrize(
    ("range_name", "points"), [("1h", 361), ("24h", 24 * 60), ("7d", 7 * 24), ("30d", 30 * 24)]
)
def test_any_range_of_ninety_days_is_a_few_queries_and_no_old_raw_rows(
    owner, token, range_name, points
):
    gpu = GPU.objects.get(uuid=UUID)
    fill_ninety_days(gpu, timezone.now())

    with CaptureQueriesContext(connection) as queries:
        body = owner.get(f"/api/v1/me/gpus/{UUID}/series", {"range": range_name}).json()

    assert abs(len(body["points"]) - points) <= 1
    assert len(queries) <= 6
    sample_table = Sample._meta.db_table
    raw_reads = [q["sql"] for q in queries.captured_queries if sample_table in q["sql"]]
    if range_name == "1h":
        assert len(raw_reads) == 1 and "ts" in raw_reads[0]
        assert all(p["t"] >= (timezone.now() - timedelta(hours=1, seconds=5)).isoformat()[:19]
                   for p in body["points"])  # fmt: skip
    else:
        assert raw_reads == []


def test_retention_prunes_raw_minutes_and_processed_batches_but_keeps_hours(token):
    gpu = GPU.objects.get(uuid=UUID)
    now = timezone.now()
    fill_ninety_days(gpu, now)
    Sample.objects.create(gpu=gpu, ts=now - timedelta(days=8), memory_used_mib=1,
                          memory_total_mib=46068)  # fmt: skip
    GpuMinute.objects.create(gpu=gpu, start=now - timedelta(days=91))
    old = TelemetryBatch.objects.create(node=gpu.node, batch_id=uuid.uuid4(), samples=[],
                                        response={}, status="processed",
                                        received_at=now - timedelta(days=8))  # fmt: skip
    pending = TelemetryBatch.objects.create(node=gpu.node, batch_id=uuid.uuid4(), samples=[{}],
                                            response={}, status="pending",
                                            received_at=now - timedelta(days=8))  # fmt: skip
    hours_before = GpuHour.objects.count()

    removed = retention.prune(now)

    # The old sample is in no day partition on PostgreSQL (the DEFAULT one holds it).
    assert removed == {"samples": 1, "sample_days": 0, "minutes": 1, "batches": 1}
    assert not TelemetryBatch.objects.filter(pk=old.pk).exists()
    assert TelemetryBatch.objects.filter(pk=pending.pk).exists()
    assert GpuHour.objects.count() == hours_before
    assert Sample.objects.filter(ts__lt=now - timedelta(days=7)).count() == 0


def test_naive_now_is_never_used():
    assert base_time().tzinfo is not None
    assert datetime.now(UTC).tzinfo is UTC


def test_an_agent_sampling_every_second_gets_its_hour_from_minute_rollups(owner, token):
    """A third-party agent may sample as often as it likes: the 1 h chart stays bounded."""
    t0 = (timezone.now() - timedelta(minutes=30)).replace(second=0, microsecond=0)
    every_second = [sample(t0 + timedelta(seconds=s)) for s in range(MAX_RAW_POINTS + 100)]
    for start in range(0, len(every_second), 1000):
        post(token, every_second[start : start + 1000])

    body = owner.get(f"/api/v1/me/gpus/{UUID}/series?range=1h").json()

    # 820 s of samples: 14 minutes, and a 15th that the last sample's coverage spills into.
    assert (body["resolution_s"], len(body["points"])) == (60, 15)
    assert len(body["points"]) <= MAX_RAW_POINTS
    page = owner.get(f"/gpus/{UUID}/?range=1h")
    assert b"minute rollups (one per minute)" in page.content
