"""Hand-computed reward scenarios, end to end through the real API (DESIGN.md "Reward
definitions"): agents enroll and post telemetry, the scheduler attests jobs, a worker ingests,
the epoch settles, and the contributor reads what they earned from /api/v1/me/rewards.

Every scenario uses one aligned hour, 3 to 4 hours ago, under the default policy: 1 h epochs,
30 s max gap, 1,000 OMNIT compute pool and 250 OMNIT idle pool. Agents sample every 10 s from
the epoch's first second, so a GPU that reports throughout covers 3600 s exactly. The amounts
were worked out by hand (and a calculator) from the definitions, not by the code under test.
"""

from datetime import timedelta

import pytest

from contributors.models import GPU, GpuFlag, NodeFlag
from rewards import settlement
from rewards.models import Epoch
from tests.support.agent_api import iso
from tests.support.rewards import (
    A1,
    A1_MIG,
    A2,
    A3,
    B1,
    COMPUTE_POOL,
    H100,
    IDLE_POOL,
    RTX_4090,
    Rig,
    attest,
    by_gpu,
    epoch_start,
    gpu,
    ingest_all,
    rewards_of,
    samples,
    settle,
)

pytestmark = pytest.mark.django_db


# --- the scenarios --------------------------------------------------------------------------


def test_gpu_busy_all_epoch_takes_the_whole_compute_pool(alice):
    start = epoch_start()
    rig = Rig(alice, [gpu(A1, H100)])
    attest("job-1", A1, start - timedelta(minutes=10))  # still running
    rig.report(samples(A1, start, util=50, used=60000, job="job-1"))
    ingest_all()

    epoch = settle(start)

    # 3600 s * 50/100 * weight 3 = 5400 units, alone in the pool.
    body = rewards_of(alice)
    assert body["entries"] == [
        {
            "epoch_start": iso(start),
            "epoch_end": iso(start + timedelta(hours=1)),
            "gpu_uuid": A1,
            "kind": "compute",
            "units": "5400",
            "amount_wei": "1000000000000000000000",
            "inputs": {
                "seconds": "3600",
                "covered_seconds": "3600",
                "avg_utilization_pct": "50",
                "utilization_pct_seconds": "180000",
                "null_utilization_seconds": "0",
                "weight": "3",
                "gib_seconds": None,
                "pool_wei": "1000000000000000000000",
                "total_units": "5400",
                "share": "1",
                "units": "5400",
            },
        }
    ]
    assert body["totals"] == {
        "compute_wei": "1000000000000000000000",
        "idle_wei": "0",
        "earned_wei": "1000000000000000000000",
    }
    # Busy all epoch: no idle time, so nobody earned the idle pool.
    assert (epoch.idle_paid_wei, epoch.idle_unallocated_wei) == (0, IDLE_POOL)
    assert (epoch.compute_paid_wei, epoch.compute_unallocated_wei) == (COMPUTE_POOL, 0)


def test_two_contributors_share_the_idle_pool_by_available_memory(alice, bob):
    start = epoch_start()
    Rig(alice, [gpu(A1, H100)]).report(samples(A1, start, used=1024))
    bob_rig = Rig(bob, [gpu(B1, RTX_4090)])
    GPU.objects.filter(uuid=B1).update(committed_memory_mib=16384)
    bob_rig.report(samples(B1, start, used=2000, total=24564))
    ingest_all()

    epoch = settle(start)

    # alice: 3600 s * min(81559, 81559 - 1024) / 1024 = 283130.859375 GiB*s
    # bob:   3600 s * min(16384, 24564 - 2000) / 1024 = 57600 GiB*s
    # alice: floor(250e18 * 283130.859375 / 340730.859375) = 207737904848378542906 (+1 leftover)
    alice_idle = by_gpu(rewards_of(alice))[(A1, "idle")]
    bob_idle = by_gpu(rewards_of(bob))[(B1, "idle")]
    assert alice_idle["units"] == "283130.859375"
    assert alice_idle["amount_wei"] == "207737904848378542907"
    assert alice_idle["inputs"]["gib_seconds"] == "283130.859375"
    assert alice_idle["inputs"]["seconds"] == "3600"
    assert bob_idle["units"] == "57600"
    assert bob_idle["amount_wei"] == "42262095151621457093"
    assert bob_idle["inputs"]["committed_mib"] == 16384
    assert epoch.idle_paid_wei == IDLE_POOL
    # Nobody ran an attested job: the compute pool is recorded unallocated.
    assert (epoch.compute_paid_wei, epoch.compute_unallocated_wei) == (0, COMPUTE_POOL)


def test_an_offline_gap_earns_nothing_for_its_time(alice, bob):
    start = epoch_start()
    # alice's agent is silent from 600 s to 900 s: her 590 s sample covers up to 620 s (max gap
    # 30 s), so 280 s are offline and 3320 s covered.
    seconds = [s for s in range(0, 3600, 10) if not 600 <= s < 900]
    used = 81559 - 8192  # 8 GiB stay available
    Rig(alice, [gpu(A1, H100)]).report(samples(A1, start, seconds=seconds, used=used))
    Rig(bob, [gpu(B1, H100)]).report(samples(B1, start, used=used))
    ingest_all()

    settle(start)

    # 3320 * 8 = 26560 and 3600 * 8 = 28800 GiB*s of 55360.
    alice_idle = by_gpu(rewards_of(alice))[(A1, "idle")]
    assert (alice_idle["inputs"]["seconds"], alice_idle["units"]) == ("3320", "26560")
    assert alice_idle["amount_wei"] == "119942196531791907514"
    bob_idle = by_gpu(rewards_of(bob))[(B1, "idle")]
    assert (bob_idle["units"], bob_idle["amount_wei"]) == ("28800", "130057803468208092486")


def test_a_job_the_scheduler_never_attested_earns_only_idle(alice, bob):
    start = epoch_start()
    # alice's agent says her GPU runs "ghost-7" at 90 %, but no scheduler ever attested it.
    Rig(alice, [gpu(A1, H100)]).report(samples(A1, start, util=90, used=40000, job="ghost-7"))
    bob_rig = Rig(bob, [gpu(B1, H100)])
    attest("job-b", B1, start - timedelta(hours=1), start + timedelta(hours=2))
    bob_rig.report(samples(B1, start, util=90, used=40000, job="job-b"))
    ingest_all()

    epoch = settle(start)

    alice_entries = by_gpu(rewards_of(alice))
    assert set(alice_entries) == {(A1, "idle")}
    # 3600 s * (81559 - 40000) / 1024 = 146105.859375 GiB*s, alone in the idle pool.
    assert alice_entries[(A1, "idle")]["units"] == "146105.859375"
    assert alice_entries[(A1, "idle")]["amount_wei"] == str(IDLE_POOL)
    bob_entries = by_gpu(rewards_of(bob))
    assert set(bob_entries) == {(B1, "compute")}
    # 3600 s * 0.9 * 3 = 9720 units.
    assert bob_entries[(B1, "compute")]["units"] == "9720"
    assert bob_entries[(B1, "compute")]["amount_wei"] == str(COMPUTE_POOL)
    assert epoch.compute_unallocated_wei == epoch.idle_unallocated_wei == 0


def test_a_job_ending_mid_epoch_is_busy_until_it_ends_then_idle(alice, bob):
    start = epoch_start()
    rig = Rig(alice, [gpu(A1, H100)])
    attest("job-a", A1, start - timedelta(minutes=10), start + timedelta(minutes=30))
    # The agent keeps naming the job all epoch; only its attested half is busy.
    rig.report(samples(A1, start, util=80, used=10240, job="job-a"))
    Rig(bob, [gpu(B1, RTX_4090)]).report(samples(B1, start, used=0, total=24564))
    ingest_all()

    settle(start)

    alice_entries = by_gpu(rewards_of(alice))
    compute = alice_entries[(A1, "compute")]
    # 1800 s * 0.8 * 3 = 4320 units, the only compute: the whole pool.
    assert (compute["inputs"]["seconds"], compute["units"]) == ("1800", "4320")
    assert compute["inputs"]["avg_utilization_pct"] == "80"
    assert compute["amount_wei"] == str(COMPUTE_POOL)
    # Idle: alice 1800 s * 71319 / 1024 = 125365.4296875, bob 3600 s * 24564 / 1024 = 86357.8125.
    idle = alice_entries[(A1, "idle")]
    assert (idle["inputs"]["seconds"], idle["units"]) == ("1800", "125365.4296875")
    assert idle["amount_wei"] == "148029838850282696954"
    bob_idle = by_gpu(rewards_of(bob))[(B1, "idle")]
    assert (bob_idle["units"], bob_idle["amount_wei"]) == ("86357.8125", "101970161149717303046")


def test_null_utilization_counts_as_zero_and_the_statement_says_so(alice):
    start = epoch_start()
    rig = Rig(alice, [gpu(A1, H100)])
    attest("job-n", A1, start - timedelta(minutes=1))
    rig.report(samples(A1, start, util=None, used=1000, job="job-n"))
    ingest_all()

    epoch = settle(start)

    compute = by_gpu(rewards_of(alice))[(A1, "compute")]
    assert compute["units"] == "0"
    assert compute["amount_wei"] == "0"
    assert compute["inputs"]["seconds"] == "3600"
    assert compute["inputs"]["null_utilization_seconds"] == "3600"
    assert compute["inputs"]["avg_utilization_pct"] == "0"
    # No units anywhere: both pools are recorded unallocated.
    assert (epoch.compute_unallocated_wei, epoch.idle_unallocated_wei) == (COMPUTE_POOL, IDLE_POOL)


def test_disabled_and_flagged_gpus_are_held_out_with_their_reason(alice, bob):
    start = epoch_start()
    rig = Rig(alice, [gpu(A1, H100), gpu(A2, H100), gpu(A3, H100)])
    GPU.objects.filter(uuid=A1).update(enabled=False)
    # a2's own agent reports a power no H100 draws (5 kW): the portal flags a2 for an admin.
    (impossible,) = samples(A2, start - timedelta(minutes=1), seconds=range(1))
    answer = rig.post([{**impossible, "power_w": 5000}])
    assert answer["rejected"] == [{"index": 0, "error": "implausible_telemetry"}]
    # Bob's agent names alice's a3 as its own: that flags bob's node, never alice's GPU.
    bob_rig = Rig(bob, [gpu(A3, H100)])
    refused = bob_rig.post(samples(A3, start, seconds=range(0, 30, 10)))
    assert refused["accepted"] == 0
    assert {r["error"] for r in refused["rejected"]} == {"gpu_owned_by_other_node"}
    rig.report(
        samples(A1, start, used=0) + samples(A2, start, used=0) + samples(A3, start, used=40000)
    )
    ingest_all()

    epoch = settle(start)

    body = rewards_of(alice)
    entries = by_gpu(body)
    assert entries[(A1, "held_out")]["reason"] == "disabled"
    assert entries[(A2, "held_out")]["reason"] == "flagged"
    assert entries[(A2, "held_out")]["detail"] == "Open flag: implausible telemetry."
    assert entries[(A1, "held_out")]["amount_wei"] == "0"
    assert entries[(A1, "held_out")]["inputs"]["seconds"] == "3600"
    # Their units do not count: a3's 146105.859375 GiB*s are all the idle units there are, bob's
    # reports of a3 notwithstanding.
    assert entries[(A3, "idle")]["units"] == "146105.859375"
    assert entries[(A3, "idle")]["amount_wei"] == str(IDLE_POOL)
    assert epoch.idle_units == "146105.859375"
    assert epoch.held_out_count == 2
    assert body["totals"]["earned_wei"] == str(IDLE_POOL)
    assert not GpuFlag.objects.filter(gpu__uuid=A3).exists()
    assert NodeFlag.objects.get().node_id == bob_rig.node_id


def test_a_mig_instance_earns_compute_for_its_physical_gpu(alice):
    start = epoch_start()
    mig = {
        "uuid": A1_MIG,
        "name": "NVIDIA H100 80GB HBM3 MIG 3g.40gb",
        "memory_total_mib": 40192,
        "mig_parent_uuid": A1,
    }
    rig = Rig(alice, [gpu(A1, H100), mig])
    attest("job-m", A1_MIG, start - timedelta(minutes=1))
    rig.report(
        samples(A1, start, util=None, used=20000)  # a GPU in MIG mode reports none
        + samples(A1_MIG, start, util=40, used=20000, total=40192, job="job-m")
    )
    ingest_all()

    settle(start)

    entries = by_gpu(rewards_of(alice))
    assert set(entries) == {(A1, "compute"), (A1, "idle")}
    # 3600 s * 0.4 * 3 (the H100's weight) = 4320; idle from the parent's own samples only:
    # 3600 s * (81559 - 20000) / 1024 = 216418.359375 GiB*s.
    assert entries[(A1, "compute")]["units"] == "4320"
    assert entries[(A1, "idle")]["units"] == "216418.359375"


# --- when epochs settle -----------------------------------------------------------------------


def test_settling_twice_changes_nothing(alice):
    start = epoch_start()
    Rig(alice, [gpu(A1, H100)]).report(samples(A1, start, used=1024))
    ingest_all()
    settle(start)
    before = rewards_of(alice)

    window = settlement.window_from(start)
    assert settlement.settle(window) is None
    assert settlement.settle_due(until=start + timedelta(hours=1)) == []
    assert rewards_of(alice) == before
    assert Epoch.objects.count() == 1


def test_a_second_worker_racing_on_the_same_epoch_writes_nothing(alice, monkeypatch):
    start = epoch_start()
    Rig(alice, [gpu(A1, H100)]).report(samples(A1, start, used=1024))
    ingest_all()
    window = settlement.window_from(start)
    assert settlement.settle(window) is not None
    before = rewards_of(alice)

    # The second worker checked before the first committed: only the unique start stops it.
    monkeypatch.setattr(settlement, "is_settled", lambda window: False)
    assert settlement.settle(window) is None
    assert rewards_of(alice) == before
    assert Epoch.objects.count() == 1


def test_an_epoch_waits_for_pending_batches_and_for_its_grace(alice):
    start = epoch_start()
    rig = Rig(alice, [gpu(A1, H100)])
    rig.report(samples(A1, start, used=1024))

    assert settlement.settle_due() == []  # the batch holding its samples is still pending
    ingest_all()
    # Grace: not due until 15 minutes after its end.
    end = start + timedelta(hours=1)
    assert settlement.settle_due(now=end + timedelta(minutes=14)) == []
    assert [e.start for e in settlement.settle_due(now=end + timedelta(minutes=15))] == [start]


def test_samples_arriving_after_settlement_are_kept_but_not_rewarded(alice):
    start = epoch_start()
    rig = Rig(alice, [gpu(A1, H100)])
    rig.report(samples(A1, start, seconds=range(0, 1800, 10), used=1024))
    ingest_all()
    settle(start)
    before = rewards_of(alice)

    rig.report(samples(A1, start, seconds=range(1800, 3600, 10), used=1024))
    ingest_all()
    settlement.settle_due(until=start + timedelta(hours=1))

    assert rewards_of(alice) == before
    assert GPU.objects.get(uuid=A1).samples.count() == 360
