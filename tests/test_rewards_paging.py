"""Long histories a page at a time: /api/v1/me/rewards pages whole epochs behind cursors, the
statement on /rewards/ pages too (fewer epochs a page for many GPUs), and the CSV export reads
the ledger a slice of epochs at a time yet writes every entry once, in order.

The ledger rows are written directly (settling hundreds of epochs through the agent API would
only slow the test); everything is read back through HTTP.
"""

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from contributors.models import GPU, Node
from rewards import views as reward_pages
from rewards.api import entries as reward_api
from rewards.models import Epoch, HeldOut, RewardEntry
from tests.support.agent_api import nvml_uuid
from tests.support.siwe import signed_in

pytestmark = pytest.mark.django_db

HOUR = timedelta(hours=1)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def machine(owner, tag: str, gpus: int) -> list[GPU]:
    node = Node.objects.create(
        owner=owner, name=f"rig-{tag}", token_prefix=f"p-{tag}", token_hash=f"h-{tag}"
    )
    first_seen = timezone.now() - timedelta(days=400)
    return [
        GPU.objects.create(
            node=node,
            uuid=nvml_uuid(f"{tag}-{i}"),
            name="NVIDIA H100 80GB HBM3",
            memory_total_mib=81559,
            first_seen_at=first_seen,
        )
        for i in range(gpus)
    ]


def history(hours: int, gpus_by_owner: dict, held: tuple = ()) -> list[Epoch]:
    """`hours` settled hourly epochs ending an hour ago; each GPU earns compute and idle in each,
    amounts that differ per epoch and GPU (so a row read twice or lost changes the sums)."""
    last = timezone.now().replace(minute=0, second=0, microsecond=0) - HOUR
    epochs = Epoch.objects.bulk_create(
        Epoch(
            start=last - k * HOUR,
            end=last - (k - 1) * HOUR,
            status=Epoch.Status.SETTLED,
            grace_s=0,
            max_gap_s=30,
            compute_pool_wei=10**21,
            idle_pool_wei=10**20,
        )
        for k in range(hours, 0, -1)
    )
    entries, held_rows = [], []
    for n, epoch in enumerate(epochs):
        for owner, gpus in gpus_by_owner.items():
            for g, gpu in enumerate(gpus):
                if (n, gpu) in held:
                    held_rows.append(
                        HeldOut(epoch=epoch, gpu=gpu, contributor=owner, reason="disabled")
                    )
                    continue
                for kind, amount in (("compute", 2**64 + n * 1000 + g), ("idle", 7 + n + g)):
                    entries.append(
                        RewardEntry(
                            epoch=epoch,
                            gpu=gpu,
                            contributor=owner,
                            kind=kind,
                            units="1",
                            amount_wei=amount,
                            inputs={"seconds": "3600", "pool_wei": "1", "share": "1"},
                        )
                    )
    RewardEntry.objects.bulk_create(entries)
    HeldOut.objects.bulk_create(held_rows)
    return epochs


def all_pages(client: Client, **params) -> list[dict]:
    bodies = []
    response = client.get("/api/v1/me/rewards", params)
    while True:
        assert response.status_code == 200, response.content
        bodies.append(response.json())
        if bodies[-1]["next"] is None:
            return bodies
        response = client.get(bodies[-1]["next"])


# --- /api/v1/me/rewards -------------------------------------------------------------------------


def test_pages_hold_whole_epochs_newest_first_and_every_row_once(alice, bob):
    gpus = machine(alice, "a", 3)
    epochs = history(50, {alice: gpus, bob: machine(bob, "b", 1)}, held={(10, gpus[1])})
    pages = all_pages(signed_in(alice), limit=7)

    assert len(pages) == 8  # 50 epochs, 7 a page
    starts = [e["epoch_start"] for page in pages for e in page["entries"]]
    expected = [iso(epoch.start) for epoch in reversed(epochs) for _ in range(6)]
    expected.remove(iso(epochs[10].start))  # the held-out GPU has one row, not two
    assert starts == expected
    rows = [(e["epoch_start"], e["gpu_uuid"], e["kind"]) for p in pages for e in p["entries"]]
    assert len(set(rows)) == len(rows) == 50 * 6 - 1
    assert {e["gpu_uuid"] for p in pages for e in p["entries"]} == {g.uuid for g in gpus}
    held = [e for p in pages for e in p["entries"] if e["kind"] == "held_out"]
    assert [(h["epoch_start"], h["gpu_uuid"], h["reason"]) for h in held] == [
        (iso(epochs[10].start), gpus[1].uuid, "disabled")
    ]
    for page in pages:  # the totals are the page's own, exact past 2^64
        compute = sum(int(e["amount_wei"]) for e in page["entries"] if e["kind"] == "compute")
        idle = sum(int(e["amount_wei"]) for e in page["entries"] if e["kind"] == "idle")
        assert page["totals"] == {
            "compute_wei": str(compute),
            "idle_wei": str(idle),
            "earned_wei": str(compute + idle),
        }
    assert compute > 2**64


def test_previous_leads_back_to_the_same_page(alice):
    history(20, {alice: machine(alice, "a", 2)})
    client = signed_in(alice)
    first = client.get("/api/v1/me/rewards", {"limit": 5}).json()
    assert first["previous"] is None
    second = client.get(first["next"]).json()
    assert client.get(second["previous"]).json()["entries"] == first["entries"]
    assert "limit=5" in first["next"]


def test_the_default_range_is_30_days_and_from_reaches_further(alice):
    gpu = machine(alice, "a", 1)[0]
    history(2, {alice: [gpu]})
    old_start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(days=40)
    old = Epoch.objects.create(start=old_start, end=old_start + HOUR, status="settled",
                               grace_s=0, max_gap_s=30, compute_pool_wei=0,
                               idle_pool_wei=5)  # fmt: skip
    RewardEntry.objects.create(epoch=old, gpu=gpu, contributor=alice, kind="idle", units="1",
                               amount_wei=5, inputs={})  # fmt: skip
    client = signed_in(alice)
    recent = [e["epoch_start"] for p in all_pages(client) for e in p["entries"]]
    assert iso(old_start) not in recent and len(recent) == 4
    since = iso(old_start - timedelta(days=1))
    pages = all_pages(client, **{"from": since})
    everything = [e["epoch_start"] for p in pages for e in p["entries"]]
    assert everything[-1] == iso(old_start) and len(everything) == 5


@pytest.mark.parametrize("limit", ["0", "25", "-1", "abc", "1e3", "٣"])
def test_a_limit_out_of_range_is_refused(alice, limit):
    response = signed_in(alice).get("/api/v1/me/rewards", {"limit": limit})
    assert response.status_code == 400
    assert response.json()["error"] == "validation_failed"
    assert response.json()["errors"] == [{"field": "limit", "error": "1 to 24"}]


# Base64 of "p=2026" and "p=2026-13-45 00:00:00" (a position that is no time), "r=1&p=x".
@pytest.mark.parametrize(
    "cursor", ["nonsense", "cD0yMDI2", "cD0yMDI2LTEzLTQ1IDAwOjAwOjAw", "cj0xJnA9eA==", "x" * 5000]
)
def test_a_cursor_not_given_out_is_refused(alice, cursor):
    history(3, {alice: machine(alice, "a", 1)})
    response = signed_in(alice).get("/api/v1/me/rewards", {"cursor": cursor})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_cursor"


def test_a_page_takes_the_same_queries_for_3_or_300_epochs(alice):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    gpus = machine(alice, "a", 2)
    client = signed_in(alice)
    history(3, {alice: gpus})
    with CaptureQueriesContext(connection) as small:
        assert client.get("/api/v1/me/rewards").status_code == 200
    RewardEntry.objects.all().delete()
    Epoch.objects.all().delete()
    history(300, {alice: gpus})
    with CaptureQueriesContext(connection) as big:
        body = client.get("/api/v1/me/rewards").json()
    assert len(body["entries"]) == reward_api.REWARDS_PAGE_EPOCHS * 4
    assert len(big) == len(small)


# --- the statement on /rewards/ ----------------------------------------------------------------


def statement_starts(body: str) -> list[str]:
    return re.findall(r'<h3 id="epoch-\d+"><time data-local datetime="([^"]+)"', body)


def test_the_statement_pages_through_every_epoch_once(alice):
    epochs = history(60, {alice: machine(alice, "a", 2)})
    client = signed_in(alice)
    body = client.get("/rewards/").content.decode()
    seen = []
    while True:
        starts = statement_starts(body)
        assert len(starts) <= reward_pages.STATEMENT_EPOCHS
        seen += starts
        older = re.search(r'href="([^"]+)#statement-title" rel="next"', body)
        if older is None:
            break
        body = client.get(older.group(1).replace("&amp;", "&")).content.decode()
    assert len(seen) == len(set(seen)) == 60
    assert seen[0] == epochs[-1].start.isoformat() and seen[-1] == epochs[0].start.isoformat()
    newer = re.search(r'href="([^"]+)#statement-title" rel="prev"', body)
    assert newer is not None  # the last page leads back


def test_many_gpus_show_fewer_epochs_a_page(alice):
    history(30, {alice: machine(alice, "a", 64)})
    body = signed_in(alice).get("/rewards/").content.decode()
    assert len(statement_starts(body)) == reward_pages.STATEMENT_ROWS // 64
    assert body.count('data-label="GPU"') == 64 * (reward_pages.STATEMENT_ROWS // 64)


@pytest.mark.parametrize("cursor", ["garbage", "cD0yMDI2", "cD0yMDI2LTEzLTQ1IDAwOjAwOjAw"])
def test_a_statement_cursor_not_given_out_shows_the_newest_page(alice, cursor):
    epochs = history(3, {alice: machine(alice, "a", 1)})
    response = signed_in(alice).get("/rewards/", {"statement": cursor})
    assert response.status_code == 200
    assert statement_starts(response.content.decode())[0] == epochs[-1].start.isoformat()


# --- the CSV export ----------------------------------------------------------------------------


def test_the_export_reads_in_slices_and_writes_every_entry_once_in_order(alice, bob, monkeypatch):
    monkeypatch.setattr(reward_pages, "CSV_EPOCHS_PER_QUERY", 4)
    gpus = machine(alice, "a", 3)
    history(25, {alice: gpus, bob: machine(bob, "b", 2)})
    # A GPU that earned, then left for another node of someone else, stays in the export.
    gpus[2].node = Node.objects.get(name="rig-b")
    gpus[2].save()
    response = signed_in(alice).get("/rewards/export.csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == reward_pages.CSV_COLUMNS
    body = rows[1:]
    keys = [(r[0], r[2], r[5]) for r in body]
    assert keys == sorted(keys) and len(set(keys)) == len(keys) == 25 * 3 * 2
    assert {r[2] for r in body} == {g.uuid for g in gpus}
    total = sum(int(r[7]) for r in body)
    assert total == sum(e.amount_wei for e in RewardEntry.objects.filter(contributor=alice))
    for r in body:  # OMNIT with 18 decimals, the same amount exactly
        whole, fraction = r[8].split(".")
        assert int(whole) * 10**18 + int(fraction) == int(r[7]) and len(fraction) == 18
