"""portal.lib.db's bulk helpers, on whichever database the suite runs: `insert_many` writes
what `bulk_create` would (exact wei beyond 2^63, JSON, defaults), and `field__any=ids`
selects what `field__in=ids` does, for plain and related fields, however many ids."""

from datetime import UTC, datetime, timedelta

import pytest

from contributors.models import GPU
from contributors.signin import contributor_for_sign_in
from portal.lib import db
from rewards.models import Epoch, RewardEntry
from rewards.settlement import LedgerRow
from tests.support.siwe import ALICE, BOB

START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def fleet():
    owners = [contributor_for_sign_in(ALICE.address), contributor_for_sign_in(BOB.address)]
    gpus = []
    for n, owner in enumerate(owners):
        node = owner.nodes.create(name=f"n{n}", token_prefix=f"p{n}", token_hash=f"h{n}")
        gpus += [
            GPU.objects.create(node=node, uuid=f"GPU-{n}-{i}", name="H100", memory_total_mib=1)
            for i in range(3)
        ]
    return owners, gpus


@pytest.mark.django_db
def test_any_selects_what_in_selects(fleet):
    owners, gpus = fleet
    some = [gpus[0].pk, gpus[4].pk, 10**9]
    assert set(GPU.objects.filter(pk__any=some)) == set(GPU.objects.filter(pk__in=some))
    assert list(GPU.objects.filter(pk__any=[])) == []
    mine = GPU.objects.filter(node__owner_id__any=[owners[1].pk])
    assert {g.uuid for g in mine} == {"GPU-1-0", "GPU-1-1", "GPU-1-2"}
    node_ids = [gpus[0].node_id]
    assert GPU.objects.filter(node_id__any=node_ids).count() == 3  # a foreign key's column
    many = list(range(1, 100_001))  # one parameter, whatever the count
    assert GPU.objects.filter(pk__any=many).count() == len(gpus)


@pytest.mark.django_db
def test_insert_many_writes_what_bulk_create_writes(fleet):
    owners, gpus = fleet
    epoch = Epoch.objects.create(
        start=START,
        end=START + timedelta(hours=1),
        grace_s=0,
        max_gap_s=30,
        compute_pool_wei=0,
        idle_pool_wei=0,
        method="sql",
    )
    huge = 2**256 - 1
    rows = [
        LedgerRow(gpus[0].pk, owners[0].pk, "idle", "1.5", huge, {"share": "0.5", "n": [1]},
                  epoch.pk),
        LedgerRow(gpus[3].pk, owners[1].pk, "compute", "0", 0, {}, epoch.pk),
    ]  # fmt: skip
    db.insert_many(RewardEntry, rows)
    db.insert_many(RewardEntry, [])
    stored = {
        e.gpu_id: (e.contributor_id, e.kind, e.units, e.amount_wei, e.inputs)
        for e in RewardEntry.objects.filter(epoch=epoch)
    }
    assert stored == {
        gpus[0].pk: (owners[0].pk, "idle", "1.5", huge, {"share": "0.5", "n": [1]}),
        gpus[3].pk: (owners[1].pk, "compute", "0", 0, {}),
    }
    # A field the rows lack takes its default: created_at is now.
    assert all(e.created_at is not None for e in RewardEntry.objects.filter(epoch=epoch))
