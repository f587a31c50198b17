"""The demo's week of history: made through the portal's own paths for the fleet's enrolled
machines, once per database, with every GPU proved (but the forged one) and every epoch of the
week settled."""

import csv
import io
import time
from datetime import timedelta

import pytest
from django.db.models import Max, Min, Sum
from django.test import Client
from django.utils import timezone

from contributors.models import (
    GPU,
    Challenge,
    GpuFlag,
    GpuHour,
    GpuMinute,
    Node,
    Sample,
    TelemetryBatch,
)
from portal import demo_history
from portal.demo import (
    DEMO_CONTRIBUTORS,
    DEMO_MACHINES,
    Fleet,
    demo_account,
    demo_prices,
    make_history,
)
from rewards.models import Epoch, HeldOut, Job, RewardEntry, RewardPolicy
from rewards.settlement import policy_at

pytestmark = [
    pytest.mark.processes,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("seeded_catalog"),
]

MODELS = (
    GPU,
    Challenge,
    GpuFlag,
    GpuHour,
    GpuMinute,
    Node,
    Sample,
    TelemetryBatch,
    Epoch,
    HeldOut,
    Job,
    RewardEntry,
    RewardPolicy,
)


@pytest.fixture
def demo_settings(settings):
    """The Makefile's demo settings: 5-minute epochs, a minute's grace, demo-sized challenges."""
    settings.REWARD_EPOCH_S = 300
    settings.REWARD_GRACE_S = 60
    settings.AGENT_SAMPLE_INTERVAL_S = 10
    settings.GPU_VERIFICATION_N = 128
    settings.GPU_VERIFICATION_MAX_ROUNDS = 2
    return settings


def counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in MODELS}


@pytest.mark.gpu_verification
def test_history_is_a_settled_week_made_once(live_server, demo_settings, tmp_path, capsys):
    fleet = Fleet(live_server.url, tmp_path / "demo")
    configs = {machine.name: fleet.enrolled_config(machine) for machine in DEMO_MACHINES}

    began = time.perf_counter()
    history = make_history(configs)
    took = time.perf_counter() - began
    with capsys.disabled():
        steps = ", ".join(f"{name} {s:.1f} s" for name, s in history.steps.items())
        print(
            f"\ndemo history: {took:.1f} s, {history.cpu_seconds:.1f} s CPU ({steps}); "
            f"{history.samples} samples, {history.batches} batches, {history.jobs} jobs, "
            f"{history.challenges} challenges, {history.epochs} epochs, "
            f"{history.pruned} raw samples pruned"
        )
    assert history.made, history.skipped

    policy = RewardPolicy.objects.get(notes=demo_history.HISTORY_NOTE)
    live = RewardPolicy.objects.get(notes=demo_history.LIVE_NOTE)
    start, end = policy.effective_from, live.created_at
    assert live.effective_from - start == timedelta(days=7)
    assert timedelta(0) <= end - live.effective_from <= timedelta(hours=1, seconds=60)
    # Pages show the demo's own policy in force; the week before is paid per hour, at the same
    # emission per hour.
    assert policy_at(timezone.now()).epoch_length_s == 300
    assert policy.epoch_length_s == 3600
    assert policy.compute_pool_wei == 12 * live.compute_pool_wei

    # Every GPU has hour rollups for the week (less a machine's offline hours) and minutes
    # from its start; raw samples only for the last day (older ones were pruned).
    gpus = GPU.objects.select_related("node")
    assert gpus.count() == sum(m.gpus for m in DEMO_MACHINES)
    for gpu in gpus:
        hours = GpuHour.objects.filter(gpu=gpu).aggregate(
            first=Min("start"), last=Max("start"), online=Sum("online_s")
        )
        assert hours["first"] == start, gpu.node.name
        assert end - timedelta(hours=1) <= hours["last"] <= end, gpu.node.name
        assert GpuHour.objects.filter(gpu=gpu).count() >= 7 * 24 - 15
        assert hours["online"] >= (7 * 24 - 15) * 3600 * 0.95
        assert GpuMinute.objects.filter(gpu=gpu).aggregate(first=Min("start"))["first"] == start
        assert gpu.last_sample_at is not None and gpu.last_sample_at > end - timedelta(minutes=1)
    raw = Sample.objects.aggregate(first=Min("ts"), last=Max("ts"))
    assert raw["first"] >= end - timedelta(days=1)
    assert raw["last"] <= end
    assert not TelemetryBatch.objects.filter(status="pending").exists()
    assert not GpuFlag.objects.exists()

    # Every hour of the week is settled, and so is every 5-minute epoch due since.
    weekly = Epoch.objects.filter(policy=policy).order_by("start")
    assert weekly.count() == 7 * 24
    assert weekly.first().start == start and weekly.last().end == live.effective_from
    # ...each when it was due, as beat would have settled it.
    assert {e.settled_at - e.end for e in weekly} == {timedelta(seconds=60)}
    assert not Epoch.objects.exclude(status="settled").exists()
    assert not Epoch.objects.exclude(policy__in=[policy, live]).exists()
    for name in DEMO_CONTRIBUTORS:
        address = demo_account(name).address
        earned = RewardEntry.objects.filter(contributor__username=address)
        assert earned.filter(epoch__policy=policy).values("epoch").distinct().count() > 100
        assert earned.filter(kind="compute").aggregate(s=Sum("amount_wei"))["s"] > 0

    # The forged GPU never proved itself: held out of every hour it was online, as unverified;
    # every other GPU passed a challenge a day and earned.
    (forged,) = GPU.objects.filter(node__name__in=[m.name for m in DEMO_MACHINES if m.forged])
    held = HeldOut.objects.filter(gpu=forged, epoch__policy=policy)
    assert held.count() >= 7 * 24 - 15
    assert set(held.values_list("reason", flat=True)) == {"unverified"}
    assert not RewardEntry.objects.filter(gpu=forged).exists()
    assert not HeldOut.objects.exclude(gpu=forged).exists()
    assert not Challenge.objects.filter(gpu=forged, status__in=["passed", "failed"]).exists()
    for gpu in gpus.exclude(pk=forged.pk):
        passed = Challenge.objects.filter(gpu=gpu, status="passed")
        assert passed.count() >= 8
        assert passed.aggregate(first=Min("decided_at"))["first"] < start
        assert RewardEntry.objects.filter(gpu=gpu).exists()

    # Jobs were attested only on machines whose scheduler attests them: carol's own machine
    # ran self-reported jobs (its samples name them) and earned idle rewards only.
    attesting = {m.name for m in DEMO_MACHINES if m.attest_jobs}
    jobs = Job.objects.select_related("gpu__node")
    assert jobs.count() > 100
    assert {job.gpu.node.name for job in jobs} == attesting
    own = GPU.objects.get(node__name="carol-own-jobs")
    assert Sample.objects.filter(gpu=own).exclude(job_id="").exists()
    assert not RewardEntry.objects.filter(gpu=own, kind="compute").exists()
    assert RewardEntry.objects.filter(gpu=own, kind="idle").exists()

    # Alice's pages have the week to show.
    client = Client()
    client.force_login(Node.objects.get(name="alice-rig-1").owner)
    rig = gpus.filter(node__name="alice-rig-1").first()
    for path in ("/dashboard/", "/rewards/", f"/gpus/{rig.uuid}/"):
        assert client.get(path).status_code == 200, path
    # ...and with the demo's price table, her tax export values every epoch of the week.
    assert demo_prices() > 7 * 24
    export = client.get("/rewards/export-universal.csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    rewards = [r for r in rows if r["Label"] == "reward"]
    assert len(rewards) > 100
    assert all(r["Net Worth Amount"] and r["Net Worth Currency"] == "USD" for r in rewards)

    # A second start (a restarted `make run`) adds nothing.
    before = counts()
    again = make_history(configs)
    assert not again.made and again.skipped
    assert counts() == before


def test_no_history_for_a_database_with_data(db):
    RewardPolicy.objects.create(
        effective_from=timezone.now(),
        epoch_length_s=3600,
        grace_s=60,
        max_gap_s=30,
        compute_pool_wei=1,
        idle_pool_wei=1,
    )
    history = demo_history.ensure(DEMO_MACHINES, {})
    assert not history.made
    assert "reward policies" in history.skipped
    assert not Epoch.objects.exists()
