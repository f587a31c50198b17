"""Properties of settlement (DESIGN.md "Pools", "Coverage", "Ledger"), checked by hypothesis:
each pool pays exactly its amount, shares follow units, the order in which readings or batches
arrive does not matter, settling twice changes nothing, and the one-pass SQL usage on
PostgreSQL equals the Python reference exactly."""

import random
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from django.core.cache import cache
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contributors.models import GPU, Probe, Sample, TelemetryBatch
from contributors.signin import contributor_for_sign_in
from contributors.telemetry import store as ingest
from rewards import settlement
from rewards.models import Epoch, Job, RewardEntry
from rewards.settlement import split_pool
from rewards.usage import Device, JobSpan, Reading, database_usage, python_usage, sql_usage
from tests.support.agent_api import nvml_uuid
from tests.support.rewards import H100, Rig, attest, epoch_start, gpu, samples
from tests.support.siwe import ALICE, BOB

units_maps = st.dictionaries(
    st.text("abcdefGPU-0123456789", min_size=1, max_size=8),
    st.fractions(min_value=0, max_value=10**9, max_denominator=10**6),
    min_size=1,
    max_size=30,
)
pools = st.integers(min_value=0, max_value=2**256 - 1)


@given(pools, units_maps)
def test_each_pool_pays_exactly_its_amount(pool, units):
    paid = split_pool(pool, units)
    assert set(paid) == set(units)
    if sum(units.values()) == 0:
        assert set(paid.values()) <= {0}  # recorded unallocated instead
    else:
        assert sum(paid.values()) == pool


@given(pools, units_maps)
def test_shares_follow_units(pool, units):
    paid = split_pool(pool, units)
    total = sum(units.values())
    for key, amount in paid.items():
        if total:
            assert abs(amount - Fraction(pool) * units[key] / total) < 1
        if units[key] == 0:
            assert amount == 0
    for a in units:
        for b in units:
            if units[a] > units[b]:
                assert paid[a] >= paid[b]


def test_leftover_wei_go_by_largest_remainder_then_uuid():
    # 10 wei over three equal shares: 3 each and one left, to the first uuid.
    assert split_pool(10, {"GPU-b": 1, "GPU-a": 1, "GPU-c": 1}) == {
        "GPU-a": 4,
        "GPU-b": 3,
        "GPU-c": 3,
    }
    # 7 wei over 1:2: exact 2.33 and 4.67: the larger remainder gets the leftover wei.
    assert split_pool(7, {"GPU-a": 1, "GPU-b": 2}) == {"GPU-a": 2, "GPU-b": 5}


# --- usage: coverage is a function of the set of readings ---------------------------------------

START = datetime(2026, 1, 1, tzinfo=UTC)
END = START + timedelta(minutes=10)
GAP = timedelta(seconds=30)


@st.composite
def fleets(draw):
    """Readings of a physical GPU and a MIG instance, jobs on both, some unattested."""
    devices = {1: Device(1, 1, draw(st.integers(0, 81559))), 2: Device(2, 1, 40192)}
    jobs = {}
    for name in ("j1", "j2"):
        a = START + timedelta(microseconds=draw(st.integers(-60_000_000, 600_000_000)))
        b = a + timedelta(microseconds=draw(st.integers(0, 600_000_000)))
        jobs[name] = JobSpan(name, 1, a, b)
    readings = []
    for device in (1, 2):
        offsets = draw(st.sets(st.integers(-40_000_000, 620_000_000), max_size=40))
        total = 81559 if device == 1 else 40192
        for offset in offsets:
            readings.append(
                Reading(
                    device,
                    START + timedelta(microseconds=offset),
                    draw(st.one_of(st.none(), st.sampled_from([0.0, 12.5, 33.3, 99.9, 100.0]))),
                    draw(st.integers(0, total)),
                    total,
                    draw(st.sampled_from(["", "j1", "j2", "ghost"])),
                )
            )
    return devices, jobs, readings


@given(fleets(), st.randoms())
def test_the_order_of_readings_does_not_matter(fleet, rnd):
    devices, jobs, readings = fleet
    shuffled = list(readings)
    rnd.shuffle(shuffled)
    first = python_usage(readings, devices, jobs, START, END, GAP)
    second = python_usage(shuffled, devices, jobs, START, END, GAP)
    assert {k: u.as_tuple() for k, u in first.items()} == {
        k: u.as_tuple() for k, u in second.items()
    }
    for use in first.values():
        assert use.busy_us + use.idle_us <= use.covered_us
        assert use.covered_us <= 2 * (END - START) // timedelta(microseconds=1)


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the one-pass query is PostgreSQL's")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleet=fleets(), probe=st.one_of(st.none(), st.tuples(st.integers(0, 81559), st.booleans())))
def test_sql_usage_equals_the_python_reference_exactly(fleet, probe):
    """Also with a scheduler probe on the physical GPU, which caps its idle memory when it
    succeeded (a failed one caps nothing: it holds the GPU out, in settlement)."""
    devices, jobs, readings = fleet

    class Rollback(Exception):
        pass

    try:
        with transaction.atomic():
            owner = contributor_for_sign_in(ALICE.address)
            node = owner.nodes.create(name="n", token_prefix="p", token_hash="h")
            parent = GPU.objects.create(
                node=node, uuid="GPU-p", name=H100["name"], memory_total_mib=81559,
                committed_memory_mib=devices[1].committed_mib,
            )  # fmt: skip
            child = GPU.objects.create(
                node=node, uuid="MIG-c", name="MIG", memory_total_mib=40192, mig_parent=parent
            )
            pk = {1: parent.pk, 2: child.pk}
            Sample.objects.bulk_create(
                Sample(
                    gpu_id=pk[r.device], ts=r.ts, utilization_gpu_pct=r.util,
                    memory_used_mib=r.used_mib, memory_total_mib=r.total_mib, job_id=r.job_id,
                )
                for r in readings
            )  # fmt: skip
            for job in jobs.values():
                Job.objects.create(
                    job_id=job.job_id, gpu=child if job.job_id == "j2" else parent,
                    kind="training", started_at=job.start, ended_at=job.end,
                )  # fmt: skip
            if probe is not None:
                Probe.objects.create(gpu=parent, at=START, allocated_mib=probe[0], ok=probe[1])
            now = END + timedelta(hours=1)
            reference = database_usage(START, END, GAP, now)
            fast = sql_usage(START, END, GAP, now)
            assert {k: u.as_tuple() for k, u in fast.items()} == {
                k: u.as_tuple() for k, u in reference.items()
            }
            if probe is not None and probe[1] and parent.pk in fast:
                use = fast[parent.pk]
                assert use.idle_mib_us <= use.idle_us * probe[0]
            raise Rollback
    except Rollback:
        pass


# --- through the API: batch arrival order, settling twice ---------------------------------------


def settle_world(seed: int, batch_order: list[int], ingest_order: list[int]) -> dict:
    """Two contributors' GPUs report one epoch in shuffled batches; what did each GPU earn?"""
    cache.clear()
    rnd = random.Random(seed)
    start = epoch_start()
    alice, bob = contributor_for_sign_in(ALICE.address), contributor_for_sign_in(BOB.address)
    gpu_a, gpu_b = nvml_uuid("a"), nvml_uuid("b")
    rig_a = Rig(alice, [gpu(gpu_a, H100)])
    rig_b = Rig(bob, [gpu(gpu_b, H100)])
    attest("job-a", gpu_a, start + timedelta(seconds=rnd.randrange(0, 1800)))
    readings = {}
    for uuid_ in (gpu_a, gpu_b):
        readings[uuid_] = []
        for s in sorted(rnd.sample(range(0, 3600, 7), 200)):
            readings[uuid_] += samples(
                uuid_, start, seconds=[s], util=rnd.choice([None, 10, 55.5, 100]),
                used=rnd.randrange(0, 81559), job=rnd.choice([None, "job-a", "ghost"]),
            )  # fmt: skip
    # Odd chunks are alice's, even ones bob's, each half of one GPU's readings, interleaved.
    a, b = readings[gpu_a], readings[gpu_b]
    chunks = [b[0::2], a[0::2], b[1::2], a[1::2]]
    for index in batch_order:
        (rig_a if index % 2 else rig_b).report(chunks[index])
    batches = list(TelemetryBatch.objects.order_by("pk").values_list("pk", flat=True))
    for index in ingest_order:
        ingest.ingest(batches[index])
    assert settlement.settle_due(until=start + timedelta(hours=1))
    result = {
        (e.gpu.uuid, e.kind): (e.units, e.amount_wei)
        for e in RewardEntry.objects.select_related("gpu")
    }
    assert settlement.settle_due(until=start + timedelta(hours=1)) == []  # settling twice
    assert settlement.settle(settlement.window_from(start)) is None
    assert result == {
        (e.gpu.uuid, e.kind): (e.units, e.amount_wei)
        for e in RewardEntry.objects.select_related("gpu")
    }
    assert Epoch.objects.count() == 1
    return result


@pytest.mark.django_db
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(0, 2**32),
    batch_order=st.permutations(range(4)),
    ingest_order=st.permutations(range(4)),
)
def test_the_order_in_which_batches_arrive_does_not_matter(seed, batch_order, ingest_order):
    class Rollback(Exception):
        pass

    outcomes = []
    for orders in (([0, 1, 2, 3], [0, 1, 2, 3]), (batch_order, ingest_order)):
        try:
            with transaction.atomic():
                outcomes.append(settle_world(seed, *orders))
                raise Rollback
        except Rollback:
            pass
    assert outcomes[0] == outcomes[1]
    assert outcomes[0]  # something was earned
    assert sum(a for (_, kind), (_, a) in outcomes[0].items() if kind == "idle") in (
        0,
        250 * 10**18,
    )
