"""The day totals settlement keeps (`EarningDay`) always equal the ledger they sum: after any
mix of settlements and corrections, per contributor and per day, to the wei, beyond 2^63."""

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contributors.models import GPU, Node, Sample
from contributors.signin import contributor_for_sign_in
from rewards import accumulators, ledger, settlement
from rewards.claims import balance_of
from rewards.models import EarningDay, Epoch, RewardEntry, RewardPolicy
from rewards.wei import sum_wei
from tests.support.agent_api import nvml_uuid
from tests.support.siwe import ALICE, BOB, CAROL

pytestmark = pytest.mark.django_db

START = datetime(2026, 3, 1, 20, tzinfo=UTC)  # epochs straddle UTC midnights
HOUR = timedelta(hours=1)


def world():
    """Three contributors, a GPU each, and a policy with pools past 2^63."""
    RewardPolicy.objects.create(
        effective_from=datetime(1970, 1, 1, tzinfo=UTC), epoch_length_s=3600, grace_s=0,
        max_gap_s=30, compute_pool_wei=2**70 + 7, idle_pool_wei=2**64 + 3,
    )  # fmt: skip
    gpus = []
    for index, wallet in enumerate((ALICE, BOB, CAROL)):
        owner = contributor_for_sign_in(wallet.address)
        node = Node.objects.create(owner=owner, name="rig", token_prefix=f"p{index}",
                                   token_hash=f"h{index}")  # fmt: skip
        gpus.append(GPU.objects.create(node=node, uuid=nvml_uuid(f"g{index}"),
                                       name="NVIDIA H100", memory_total_mib=81559))  # fmt: skip
    return gpus


def report(gpu: GPU, hour: int, minutes: int, used_mib: int) -> None:
    at = START + hour * HOUR
    Sample.objects.bulk_create(
        Sample(gpu=gpu, ts=at + timedelta(seconds=10 * i), memory_used_mib=used_mib,
               memory_total_mib=81559, utilization_gpu_pct=0.0)
        for i in range(minutes * 6)
    )  # fmt: skip


def ledger_by_day() -> dict:
    totals: dict = defaultdict(int)
    for entry in RewardEntry.objects.select_related("epoch"):
        totals[(entry.contributor_id, entry.epoch.start.astimezone(UTC).date())] += entry.amount_wei
    return dict(totals)


steps = st.lists(
    st.one_of(
        # (hour, [(gpu index, minutes online, memory used)]): an epoch with some GPUs reporting
        st.tuples(
            st.just("settle"),
            st.integers(0, 9),
            st.lists(
                st.tuples(st.integers(0, 2), st.integers(1, 60), st.integers(0, 81559)),
                max_size=3,
            ),
        ),
        # a correction: a new entry written by hand for an already settled epoch
        st.tuples(st.just("correct"), st.integers(0, 2), st.integers(0, 2**66)),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_day_totals_equal_the_ledger_after_settlements_and_corrections(plan):
    with transaction.atomic():
        gpus = world()
        settled_hours = set()
        for step in plan:
            if step[0] == "settle":
                _, hour, reports = step
                if hour in settled_hours:
                    continue
                for index, minutes, used in reports:
                    if not Sample.objects.filter(
                        gpu=gpus[index],
                        ts__gte=START + hour * HOUR,
                        ts__lt=START + (hour + 1) * HOUR,
                    ).exists():
                        report(gpus[index], hour, minutes, used)  # fmt: skip
                window = settlement.window_from(START + hour * HOUR)
                accumulators.rebuild(window.start)  # the samples did not come through a drain
                settlement.settle(window, now=START + timedelta(days=2))
                settled_hours.add(hour)
            else:
                _, index, amount = step
                corrected = RewardEntry.objects.filter(gpu=gpus[index], kind="compute")
                epoch = Epoch.objects.exclude(entries__in=corrected).order_by("start").first()
                if epoch is None:
                    continue  # nothing (left) to correct: one entry per epoch, GPU and kind
                RewardEntry.objects.create(
                    epoch=epoch, gpu=gpus[index], contributor=gpus[index].node.owner,
                    kind=RewardEntry.Kind.COMPUTE, units="0", amount_wei=amount,
                    inputs={"correction": True},
                )  # fmt: skip

        expected = ledger_by_day()
        kept = {(d.contributor_id, d.day): d.total_wei for d in EarningDay.objects.all()}
        assert kept == expected
        for gpu in gpus:
            owner = gpu.node.owner
            full = sum_wei(RewardEntry.objects.filter(contributor=owner), "amount_wei")
            assert balance_of(owner).earned == ledger.earned_wei(owner) == full
        transaction.set_rollback(True)


def test_daily_series_reads_one_row_per_day(django_assert_num_queries):
    gpus = world()
    report(gpus[0], 0, 60, 0)
    accumulators.rebuild(START)  # the samples did not come through a drain
    settlement.settle(settlement.window_from(START), now=START + timedelta(days=2))
    owner = gpus[0].node.owner

    with django_assert_num_queries(1):
        series = ledger.daily_earnings(owner, START.date() - timedelta(days=1), 3)

    idle = RewardEntry.objects.get(contributor=owner).amount_wei
    assert series == [
        ((START.date() - timedelta(days=1)).isoformat(), 0, 0),
        (START.date().isoformat(), 0, idle),
        ((START.date() + timedelta(days=1)).isoformat(), 0, 0),
    ]
    assert idle == 2**64 + 3  # alone in the idle pool, it takes all of it
