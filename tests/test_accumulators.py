"""Settlement from accumulators (rewards.accumulators) equals the reference to the wei.

The drains add every GPU's samples to per-(GPU, epoch, job) sums as they store them; settlement
reads those sums instead of the raw samples. Hypothesis draws fleets (a GPU and a MIG instance
of it), cuts their samples into batches that arrive and are stored in any order, attests jobs
before or after the samples (or ends them early), changes the committed memory after the
samples, adds scheduler probes, and short epochs with their own max_gap: for every epoch the
usage from the accumulators is exactly `rewards.usage.database_usage` (the reference) over
the stored samples, and settling gives the same ledger to the wei as settling from raw samples.
"""

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contributors.models import GPU, Probe, Sample, TelemetryBatch
from contributors.signin import contributor_for_sign_in
from contributors.telemetry import store
from rewards import accumulators, settlement
from rewards.models import AccumulatedSince, Epoch, Job, RewardEntry, RewardPolicy, UsageAccumulator
from rewards.usage import database_usage
from tests.support.siwe import ALICE

START = datetime(2026, 1, 1, tzinfo=UTC)
PARENT_MIB, CHILD_MIB = 81559, 40192


class Rollback(Exception):
    pass


@st.composite
def worlds(draw):
    """Readings of a physical GPU (1) and a MIG instance (2), jobs, and how they arrive."""
    length = draw(st.sampled_from([60, 120, 300, 3600]))
    gap = draw(st.sampled_from([7, 30, 45]))
    jobs = {}
    for name in ("j1", "j2"):
        a = draw(st.integers(-60_000_000, 600_000_000))
        b = None if draw(st.booleans()) else a + draw(st.integers(0, 600_000_000))
        when = ["before", "during", "after", "ended-during", "ended-after"]
        jobs[name] = (a, b, draw(st.sampled_from(when)))
    readings = []
    for device, total in ((1, PARENT_MIB), (2, CHILD_MIB)):
        offsets = draw(st.sets(st.integers(-40_000_000, 620_000_000), min_size=3, max_size=40))
        used_values = draw(st.sampled_from(["idle", "any"]))
        for offset in sorted(offsets):
            readings.append(
                (
                    device,
                    offset,
                    draw(st.one_of(st.none(), st.sampled_from([0.0, 12.5, 33.3, 99.9, 100.0]))),
                    draw(st.integers(0, 500))
                    if used_values == "idle"
                    else draw(st.integers(0, total)),
                    total,
                    draw(st.sampled_from(["", "j1", "j2", "ghost"])),
                )
            )
    batches = draw(st.integers(1, 6))
    arrival = draw(st.sampled_from(["in order", "one drain", "shuffled"]))
    committed = draw(st.sampled_from([None, 20_000, 81_000]))
    committed_after = draw(st.sampled_from(["same", None, 30_000, 81_559]))
    probe = draw(st.one_of(st.none(), st.tuples(st.integers(0, PARENT_MIB), st.booleans())))
    seed = draw(st.integers(0, 2**32))
    return {
        "length": length, "gap": gap, "jobs": jobs, "readings": readings,
        "batches": batches, "arrival": arrival, "committed": committed,
        "committed_after": committed_after, "probe": probe, "seed": seed,
    }  # fmt: skip


def at(offset_us: int) -> datetime:
    return START + timedelta(microseconds=offset_us)


def build(world) -> tuple[GPU, GPU]:
    """Store the world through the drains (batches in the drawn order), then what it changes
    after its samples."""
    RewardPolicy.objects.create(
        effective_from=START - timedelta(hours=1),
        epoch_length_s=world["length"],
        grace_s=60,
        max_gap_s=world["gap"],
        compute_pool_wei=10**21,
        idle_pool_wei=3 * 10**20 + 7,
    )
    owner = contributor_for_sign_in(ALICE.address)
    node = owner.nodes.create(name="n", token_prefix="p", token_hash="h")
    parent = GPU.objects.create(
        node=node, uuid="GPU-p", name="NVIDIA H100 80GB HBM3", memory_total_mib=PARENT_MIB,
        committed_memory_mib=world["committed"],
    )  # fmt: skip
    child = GPU.objects.create(
        node=node, uuid="MIG-c", name="MIG", memory_total_mib=CHILD_MIB, mig_parent=parent
    )
    pk = {1: parent.pk, 2: child.pk}

    def make_job(name, a, b, gpu):
        return Job.objects.create(
            job_id=name, gpu=gpu, kind="training", started_at=at(a),
            ended_at=None if b is None else at(b),
        )  # fmt: skip

    late = []  # (when, what): a job to attest, or (job, its end) to end
    for name, (a, b, when) in world["jobs"].items():
        gpu = child if name == "j2" else parent
        if when in ("after", "during"):
            late.append((when, (name, a, b, gpu)))
        elif when in ("ended-after", "ended-during"):
            job = make_job(name, a, None, gpu)
            late.append((when.removeprefix("ended-"), (job, b)))
        else:
            make_job(name, a, b, gpu)

    def attest_late(items, when):
        for item in [i for i in items if i[0] == when]:
            items.remove(item)
            what = item[1]
            if isinstance(what[0], Job):
                job, b = what
                if b is not None:
                    job.ended_at = at(b)
                    job.save()
            else:
                make_job(*what)

    rnd = random.Random(world["seed"])
    rows = [
        [pk[device], at(offset).isoformat(), util, used, total, None, None, job]
        for device, offset, util, used, total, job in world["readings"]
    ]
    if world["arrival"] == "shuffled":
        rnd.shuffle(rows)
    size = max(1, -(-len(rows) // world["batches"]))
    pks = [
        TelemetryBatch.objects.create(
            node=node, batch_id=uuid.uuid4(), samples=rows[i : i + size],
            sample_count=len(rows[i : i + size]), response={},
        ).pk
        for i in range(0, len(rows), size)
    ]  # fmt: skip
    if world["arrival"] == "one drain":
        store.drain()
    else:
        if world["arrival"] == "shuffled":
            rnd.shuffle(pks)
        # Jobs attested (or ended) "during" come after the first half of the batches.
        for index, batch in enumerate(pks):
            if index == len(pks) // 2:
                attest_late(late, "during")
            store.ingest(batch)
    attest_late(late, "during")
    attest_late(late, "after")
    if world["committed_after"] != "same":
        parent.committed_memory_mib = world["committed_after"]
        parent.save()
    if world["probe"] is not None:
        Probe.objects.create(
            gpu=parent, at=START, allocated_mib=world["probe"][0], ok=world["probe"][1]
        )
    return parent, child


def windows(world):
    """Every epoch the samples can reach."""
    window = settlement.window_from(START - timedelta(hours=1))  # the policy's first epoch
    last = START + timedelta(seconds=620 + world["gap"])
    while window.start < last:
        if window.end > START - timedelta(minutes=2):
            yield window
        window = settlement.window_from(window.end)


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds())
def test_accumulators_equal_the_reference_in_any_arrival_order(world):
    try:
        with transaction.atomic():
            build(world)
            now = START + timedelta(hours=2)
            for window in windows(world):
                gap = timedelta(seconds=window.policy.max_gap_s)
                reference = database_usage(window.start, window.end, gap, now)
                found = accumulators.usage(window.start, window.end, gap, now)
                assert found is not None

                assert {k: u.as_tuple() for k, u in found.usage.items()} == {
                    k: u.as_tuple() for k, u in reference.items()
                }, window
            raise Rollback
    except Rollback:
        pass


@pytest.mark.django_db
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds())
def test_settling_from_accumulators_pays_what_the_raw_samples_say(world):
    """The whole ledger, from accumulators and from every raw sample, to the wei."""
    ledgers = []
    for method in ("accumulators", "python"):
        try:
            with transaction.atomic():
                build(world)
                now = START + timedelta(hours=2)
                epochs = [settlement.settle(w, now, method) for w in windows(world)]
                assert all(e is not None for e in epochs)
                assert {e.method for e in epochs} == {method}
                ledgers.append(
                    (
                        sorted(
                            (e.epoch.start, e.gpu.uuid, e.kind, e.units, e.amount_wei)
                            for e in RewardEntry.objects.select_related("epoch", "gpu")
                        ),
                        sorted(
                            Epoch.objects.values_list(
                                "start", "compute_units", "idle_units", "held_out_count"
                            )
                        ),
                    )
                )
                raise Rollback
        except Rollback:
            pass
    assert ledgers[0] == ledgers[1]


# --- the cases sums cannot tell, and the guards ------------------------------------------------


def steady_world(**change) -> dict:
    """One GPU reporting every 10 s for 10 minutes, idle, in order, in one epoch of an hour."""
    readings = [(1, s * 10_000_000, 0.0, 300, PARENT_MIB, "") for s in range(60)]
    return {
        "length": 3600, "gap": 30, "jobs": {}, "readings": readings, "batches": 6,
        "arrival": "in order", "committed": None, "committed_after": "same", "probe": None,
        "seed": 1, **change,
    }  # fmt: skip


@pytest.mark.django_db
def test_in_order_samples_settle_from_one_row_per_gpu_without_raw_samples():
    parent, _child = build(steady_world())
    rows = UsageAccumulator.objects.filter(gpu=parent)
    assert [(r.job_id, r.covered_us, r.dirty) for r in rows] == [("", 620_000_000, False)]
    window = settlement.window_from(START)
    found = accumulators.usage(window.start, window.end, timedelta(seconds=30), START)
    assert found.from_raw == 0 and found.rows == 1
    use = found.usage[parent.pk]
    # 59 intervals of 10 s, the last sample counted to its ts + 30 s; 81,259 MiB available.
    assert (use.covered_us, use.idle_us, use.idle_mib_us) == (
        620_000_000,
        620_000_000,
        620_000_000 * (PARENT_MIB - 300),
    )


@pytest.mark.django_db
def test_a_late_sample_marks_its_epoch_for_a_recount_from_raw_samples():
    world = steady_world(arrival="shuffled", batches=6, seed=7)
    parent, _child = build(world)
    assert UsageAccumulator.objects.filter(gpu=parent, dirty=True).exists()
    window = settlement.window_from(START)
    gap = timedelta(seconds=30)
    found = accumulators.usage(window.start, window.end, gap, START)
    assert found.from_raw == 1
    reference = database_usage(window.start, window.end, gap, START)
    assert found.usage[parent.pk].as_tuple() == reference[parent.pk].as_tuple()


@pytest.mark.django_db
def test_a_job_known_when_its_samples_came_splits_them_exactly_and_one_changed_after_recounts():
    """The job ends 5 minutes into its samples' 10: attested before them, the drains split the
    time at its end themselves; its end moved afterwards (it runs on), settlement recounts
    that GPU from its raw samples."""
    readings = [(1, s * 10_000_000, 50.0, 70_000, PARENT_MIB, "j1") for s in range(60)]
    jobs = {"j1": (-5_000_000, 300_000_000, "before")}
    parent, _ = build(steady_world(readings=readings, jobs=jobs))
    window = settlement.window_from(START)
    gap = timedelta(seconds=30)
    later = START + timedelta(hours=1)
    found = accumulators.usage(window.start, window.end, gap, later)
    assert found.from_raw == 0
    assert found.usage[parent.pk].busy_us == 300_000_000
    assert found.usage[parent.pk].idle_us == 320_000_000
    Job.objects.filter(job_id="j1").update(ended_at=None)  # still running at settlement
    found = accumulators.usage(window.start, window.end, gap, later)
    assert found.from_raw == 1
    assert found.usage[parent.pk].busy_us == 620_000_000
    assert found.usage[parent.pk].as_tuple() == (
        database_usage(window.start, window.end, gap, later)[parent.pk].as_tuple()
    )


@pytest.mark.django_db
def test_a_policy_made_effective_after_the_samples_settles_from_raw_samples():
    build(steady_world())
    RewardPolicy.objects.create(
        effective_from=START + timedelta(minutes=5), epoch_length_s=3600, grace_s=60,
        max_gap_s=30, compute_pool_wei=1, idle_pool_wei=1,
    )  # fmt: skip
    window = settlement.window_from(START)
    assert window.end == START + timedelta(minutes=5)
    assert accumulators.usage(window.start, window.end, timedelta(seconds=30), START) is None
    epoch = settlement.settle(window, START + timedelta(hours=1))
    assert epoch.method in ("sql", "python")


@pytest.mark.django_db
def test_samples_written_outside_the_drains_count_after_rebuild_usage():
    """A sample stored without a drain is not in the accumulators until `rebuild_usage`; an
    installation without the marker settles from raw samples until then."""
    parent, _ = build(steady_world())
    Sample.objects.bulk_create(
        Sample(gpu=parent, ts=START + timedelta(seconds=600 + 10 * i), memory_used_mib=300,
               memory_total_mib=PARENT_MIB)
        for i in range(6)
    )  # fmt: skip
    window = settlement.window_from(START)
    gap = timedelta(seconds=30)
    reference = database_usage(window.start, window.end, gap, START)[parent.pk]
    before = accumulators.usage(window.start, window.end, gap, START).usage[parent.pk]
    assert before.covered_us < reference.covered_us
    AccumulatedSince.objects.all().delete()
    assert not accumulators.complete_for(window.start, gap)
    call_command("rebuild_usage", "--from", (START - timedelta(hours=1)).isoformat())
    assert accumulators.complete_for(window.start, gap)
    after = accumulators.usage(window.start, window.end, gap, START).usage[parent.pk]
    assert after.as_tuple() == reference.as_tuple()


@pytest.mark.django_db
def test_settled_epochs_rows_go_after_the_raw_samples_retention_and_open_ones_stay():
    parent, _ = build(steady_world())
    assert UsageAccumulator.objects.filter(gpu=parent).count() == 1
    later = START + timedelta(days=30)
    assert accumulators.prune(later) == 0  # nothing settled yet: the rows wait for it
    settlement.settle(settlement.window_from(START), START + timedelta(hours=2))
    assert accumulators.prune(START) == 0  # younger than the cut
    assert accumulators.prune(later) == 1
    assert not UsageAccumulator.objects.exists()


@pytest.mark.django_db
def test_a_policy_with_a_larger_max_gap_later_still_reads_the_sample_it_reaches():
    """5-minute epochs with max_gap 30 s, then from 01:00 a policy with max_gap 600 s: the
    sample at 00:53:20 is read by the epoch from 01:00 (it covers 200 s of it), though the
    epoch between (00:55-01:00) does not read it."""
    parent, _ = build(steady_world(readings=[(1, 3200_000_000 - 3600_000_000, 0.0, 300,
                                              PARENT_MIB, "")], length=300))  # fmt: skip
    RewardPolicy.objects.create(
        effective_from=START, epoch_length_s=300, grace_s=60, max_gap_s=600,
        compute_pool_wei=1, idle_pool_wei=1,
    )  # fmt: skip
    # The policy came after the sample: epochs it reaches settle from raw samples now.
    assert not accumulators.complete_for(START, timedelta(seconds=600))
    accumulators.rebuild(START - timedelta(hours=1))  # cut on the new grid
    assert accumulators.complete_for(START, timedelta(seconds=600))
    window = settlement.window_from(START)
    gap = timedelta(seconds=600)
    found = accumulators.usage(window.start, window.end, gap, START)
    reference = database_usage(window.start, window.end, gap, START)
    assert found.usage[parent.pk].covered_us == reference[parent.pk].covered_us == 200_000_000


@pytest.mark.django_db
def test_changed_settings_grid_distrusts_what_was_added_before():
    build(steady_world())
    gap = timedelta(seconds=30)
    assert accumulators.complete_for(START, gap)
    AccumulatedSince.objects.update(grid="60/5")  # as if REWARD_* changed since
    assert not accumulators.complete_for(START, gap)
    assert AccumulatedSince.objects.get().grid == accumulators.default_grid()
    assert not accumulators.complete_for(START, gap)  # until rebuild_usage


@pytest.mark.django_db
def test_a_job_attested_between_drains_recounts_the_time_counted_idle_before():
    """Three of six batches were stored before the scheduler attested the job their samples
    name: that time was counted idle, so the epoch is recounted for this GPU, and pays busy."""
    readings = [(1, s * 10_000_000, 40.0, 300, PARENT_MIB, "j1") for s in range(60)]
    jobs = {"j1": (-5_000_000, None, "during")}
    parent, _ = build(steady_world(readings=readings, jobs=jobs))
    assert UsageAccumulator.objects.get(gpu=parent).dirty
    window = settlement.window_from(START)
    gap = timedelta(seconds=30)
    later = START + timedelta(hours=1)
    found = accumulators.usage(window.start, window.end, gap, later)
    assert found.from_raw == 1
    assert found.usage[parent.pk].busy_us == 620_000_000
