"""The contributor's pages through Django's test client: data made through the real API (enroll,
telemetry, ingest, attested jobs, settlement), then query counts that do not grow with the
number of GPUs, epochs or days, the CSV export, the statement's reasons and the estimate form.
"""

import csv
import html
import io
import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from contributors.models import GPU, GpuHour
from rewards.models import HeldOut, RewardEntry
from rewards.views import CSV_COLUMNS
from tests.support.accounts import HOUR, Account, grow, hour0, settle_until, small_account
from tests.support.agent_api import nvml_uuid
from tests.support.rewards import H100, Rig, attest, gpu, ingest_all, samples
from tests.support.siwe import signed_in

pytestmark = pytest.mark.django_db


def count_queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
        assert response.status_code == 200, url
        if response.streaming:
            b"".join(response.streaming_content)  # a streamed body queries while it is read
    return len(queries)


def pages(account: Account) -> list[str]:
    gpu_url = f"/gpus/{account.uuids[0]}/"
    return [
        "/dashboard/",
        *(f"{gpu_url}?range={r}" for r in ("1h", "24h", "7d", "30d")),
        "/rewards/?days=30",
        "/rewards/?days=90",
        "/rewards/export.csv",
        "/estimate/",
        "/claims/",
        "/api/v1/me/rewards",
        "/api/v1/me/balance",
    ]


# --- query counts ------------------------------------------------------------------------------


def test_every_page_takes_the_same_queries_for_2_or_12_gpus_and_1_or_5_epochs(alice):
    account = small_account(alice)
    client = signed_in(alice)
    small = {url: count_queries(client, url) for url in pages(account)}

    grow(account)
    assert GPU.objects.filter(node__owner=alice).count() == 12
    assert GpuHour.objects.filter(gpu__uuid=account.uuids[0]).count() >= 30 * 24
    big = {url: count_queries(client, url) for url in pages(account)}

    assert big == small
    # And few: the session, the user, then one query per thing the page shows.
    assert all(count <= 12 for count in big.values()), big


def test_the_estimate_page_is_a_few_queries_signed_in_or_not(alice):
    small_account(alice)
    assert count_queries(Client(), "/estimate/") <= 4
    assert count_queries(Client(), "/estimate/?model=RTX+4090&hours=8&utilization=90") <= 4


# --- sign-in ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["/dashboard/", "/gpus/GPU-x/", "/gpus/GPU-x/?range=7d", "/rewards/",
            "/rewards/?days=90", "/rewards/export.csv"],
)  # fmt: skip
def test_pages_need_sign_in(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/signin/?next=")


def test_the_estimate_page_is_public(client):
    response = client.get("/estimate/")
    assert response.status_code == 200
    assert "What would my GPU earn?" in response.content.decode()


def test_a_gpu_of_someone_else_is_not_found(alice, bob):
    account = small_account(alice)
    assert signed_in(bob).get(f"/gpus/{account.uuids[0]}/").status_code == 404
    assert signed_in(alice).get("/gpus/GPU-none/").status_code == 404


def test_an_unknown_range_falls_back_to_24h(alice):
    account = small_account(alice)
    response = signed_in(alice).get(f"/gpus/{account.uuids[0]}/?range=2y")
    assert response.status_code == 200
    assert re.search(r'href="\?range=24h"\s+aria-current="page"', response.content.decode())


# --- the CSV export ---------------------------------------------------------------------------


def read_csv(client: Client) -> list[list[str]]:
    response = client.get("/rewards/export.csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(
        r'attachment; filename="omnitensor-rewards-\d{8}\.csv"', response["Content-Disposition"]
    )
    text = b"".join(response.streaming_content).decode("utf-8")
    return list(csv.reader(io.StringIO(text)))


def test_the_csv_has_one_row_per_entry_and_its_wei_sum_to_the_balance(alice, bob):
    account = small_account(alice)
    grow(account)
    Account(bob, "b").add_gpus(3)  # another contributor: none of theirs may appear
    client = signed_in(alice)

    header, *rows = read_csv(client)

    assert header == CSV_COLUMNS
    entries = RewardEntry.objects.filter(contributor=alice)
    assert len(rows) == entries.count() > 5
    column = {name: i for i, name in enumerate(header)}
    assert {row[column["gpu_uuid"]] for row in rows} <= set(account.uuids)
    by_key = {
        (e.epoch.start.isoformat().replace("+00:00", "Z"), e.gpu.uuid, e.kind): e
        for e in entries.select_related("epoch", "gpu")
    }
    for row in rows:
        assert len(row) == len(CSV_COLUMNS)
        assert re.fullmatch(r"\d+", row[column["amount_wei"]])
        assert re.fullmatch(r"\d+\.\d{18}", row[column["amount_omnit"]])
        whole, frac = row[column["amount_omnit"]].split(".")
        assert int(whole + frac) == int(row[column["amount_wei"]])  # the same amount, exactly
        assert row[column["epoch_start"]].endswith(":00:00Z")
        entry = by_key[(row[column["epoch_start"]], row[column["gpu_uuid"]], row[column["kind"]])]
        assert row[column["amount_wei"]] == str(entry.amount_wei)
        assert row[column["units"]] == entry.units
    assert {row[column["kind"]] for row in rows} == {"compute", "idle"}
    # Ordered by epoch, then GPU, then kind: what an accountant expects.
    keys = [(r[column["epoch_start"]], r[column["gpu_uuid"]], r[column["kind"]]) for r in rows]
    assert keys == sorted(keys)

    earned = sum(int(row[column["amount_wei"]]) for row in rows)
    balance = client.get("/api/v1/me/balance").json()
    assert str(earned) == balance["earned_wei"]
    assert earned > 0


def test_the_csv_of_a_contributor_without_entries_is_just_the_header(alice):
    assert read_csv(signed_in(alice)) == [CSV_COLUMNS]


# --- the statement ----------------------------------------------------------------------------


def page_text(response) -> str:
    """The page's text, tags dropped and entities decoded, whitespace collapsed."""
    return page_text_of(response.content.decode())


def statement_rows(response) -> dict[str, str]:
    """GPU uuid → the text of its statement row after the GPU cell (earned, then why)."""
    body = response.content.decode()
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", body, re.S):
        uuid = re.search(r'data-gpu="([^"]+)"', row)
        if uuid:
            cells = re.split(r'<td data-label="Earned">', row, maxsplit=1)[1]
            rows[uuid.group(1)] = page_text_of(cells).strip()
    return rows


def page_text_of(markup: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", markup)))


def test_the_statement_fills_the_formula_with_each_entrys_numbers_and_says_why_not(alice):
    start = hour0() - 3 * HOUR
    busy, off, idle, gone, null = (nvml_uuid(n) for n in ("busy", "off", "idle", "gone", "null"))
    rig = Rig(
        alice,
        [gpu(busy, H100), gpu(off, H100), gpu(idle, H100), gpu(gone, H100), gpu(null, H100)],
    )
    GPU.objects.update(first_seen_at=start - timedelta(days=1))
    GPU.objects.filter(uuid=off).update(enabled=False)
    attest("job-1", busy, start - timedelta(minutes=10))
    attest("job-2", null, start - timedelta(minutes=10))
    rig.report(
        samples(busy, start, util=50, used=81559, job="job-1")
        + samples(off, start, used=0)
        + samples(idle, start, used=1024)
        + samples(null, start, util=None, used=81559, job="job-2")
    )  # GPU-gone reports nothing
    ingest_all()
    settle_until(start + HOUR)

    response = signed_in(alice).get("/rewards/")
    assert response.status_code == 200
    rows = statement_rows(response)

    # 3600 s * 50 % * weight 3 = 5400 units, alone in the 1,000 OMNIT compute pool.
    assert rows[busy] == (
        "1,000.0000 compute: 3600 s busy × 50 % × weight 3 = 5400 compute units; "
        "5400 / 5400 of the pool of 1,000.0000 OMNIT → 1,000.000000 OMNIT"
    )
    # 3600 s * (81559 - 1024) MiB / 1024 = 283130.859375 GiB·s, alone in the 250 OMNIT pool.
    assert rows[idle] == (
        "250.0000 idle: 3600 s idle × min(committed, free) memory = 283130.859375 GiB·s; "
        "283130.859375 / 283130.859375 of the pool of 250.0000 OMNIT → 250.000000 OMNIT"
    )
    assert rows[off] == (
        "0.0000 Nothing earned: held out: disabled by its owner "
        "(This GPU was disabled by its owner.)."
    )
    assert rows[gone] == "0.0000 Nothing earned: offline: no telemetry covered this epoch."
    assert rows[null] == (
        "0.0000 compute: 3600 s busy × 0 % × weight 3 = 0 compute units; "
        "0 / 5400 of the pool of 1,000.0000 OMNIT → 0.000000 OMNIT "
        "Nothing more earned: utilization could not be read for 3600 s (counted as 0)."
    )
    text = page_text(response)
    # The epoch's total and the period's.
    assert "1,250.0000 OMNIT in the last 30 days." in text
    assert "· 1,250.0000 OMNIT" in text
    assert HeldOut.objects.filter(gpu__uuid=off).exists()


def test_the_statement_says_plainly_when_nothing_settled_yet(alice):
    Account(alice, "a").add_gpus(2)
    text = page_text(signed_in(alice).get("/rewards/"))
    assert "No epoch has been settled yet." in text
    assert "0.0000 OMNIT in the last 30 days." in text


def test_the_daily_chart_covers_30_or_90_days_and_sums_to_the_period_total(alice):
    account = small_account(alice)
    client = signed_in(alice)
    for days in (30, 90):
        body = client.get("/rewards/", {"days": days}).content.decode()
        figure = re.search(r'<script type="application/json" id="daily-figure">(.*?)</script>',
                           body, re.S).group(1)  # fmt: skip
        data = json.loads(figure)["data"]
        assert [t["name"] for t in data] == ["compute", "idle"]
        assert len(data[0]["x"]) == len(data[1]["x"]) == days
        assert data[0]["x"][-1] == timezone.now().date().isoformat()
        total = sum(
            RewardEntry.objects.filter(contributor=alice).values_list("amount_wei", flat=True)
        )
        assert total > 0
        charted = sum(Decimal(y) for t in data for y in t["y"])
        # Six decimals per bar, rounded down: at most a millionth of an OMNIT lost per bar.
        assert 0 <= Decimal(total) / 10**18 - charted < Decimal(2 * days) / 10**6
    assert account.uuids


# --- the dashboard and the GPU page -----------------------------------------------------------


def test_a_new_contributor_is_led_to_add_a_machine(alice):
    text = page_text(signed_in(alice).get("/dashboard/"))
    assert "Connect your first GPU" in text
    assert "Add a machine" in text


def test_the_dashboard_shows_cards_the_live_chart_and_every_gpu(alice):
    account = small_account(alice)
    response = signed_in(alice).get("/dashboard/")
    body = response.content.decode()
    text = page_text(response)
    assert "GPUs online 1 / 2" in text  # GPU 1 is disabled
    for uuid in account.uuids:
        assert f'data-gpu="{uuid}"' in body
    match = re.search(r'id="live-figure">(.*?)</script>', body, re.S)
    traces = json.loads(match.group(1))["data"]
    assert [t["meta"] for t in traces] == account.uuids
    assert len(traces[0]["x"]) == 10  # ten live samples, a minute apart
    assert 'data-live="5000"' in body


def embedded(body: str, element_id: str) -> dict:
    return json.loads(re.search(rf'id="{element_id}">(.*?)</script>', body, re.S).group(1))


def test_the_gpu_page_shades_rewarded_periods_marks_jobs_and_lists_epochs(alice):
    account = Account(alice, "a")
    account.add_gpus(4)
    start = hour0() - 3 * HOUR
    account.report_epoch(start)
    ingest_all()
    settle_until(start + HOUR)
    client = signed_in(alice)

    def rects(uuid):
        body = client.get(f"/gpus/{uuid}/", {"range": "24h"}).content.decode()
        figure = embedded(body, "history-figure")
        shapes = figure["layout"].get("shapes", [])
        shades = {(s["fillcolor"], s["x0"], s["x1"]) for s in shapes if s["type"] == "rect"}
        return body, figure, shades

    def iso(moment):
        return moment.isoformat().replace("+00:00", "Z")

    body, figure, busy = rects(account.uuids[0])
    assert busy == {("rgba(31, 79, 214, 0.14)", iso(start), iso(start + HOUR))}  # the job
    notes = [a["text"] for a in figure["layout"]["annotations"]]
    assert f"job-a-{start:%H}" in notes
    assert sum(embedded(body, "uptime-figure")["data"][0]["y"]) > 0
    assert "Rewards per epoch" in body
    assert f'<time data-local datetime="{start.isoformat()}">' in body
    _, _, idle = rects(account.uuids[3])
    assert idle == {("rgba(21, 128, 61, 0.10)", iso(start), iso(start + HOUR))}  # paid idle
    body, _, _ = rects(account.uuids[1])
    assert "held out: disabled by its owner" in body


# --- the estimate -----------------------------------------------------------------------------


def test_the_estimate_alone_in_the_network_takes_the_whole_pools(client):
    response = client.get(
        "/estimate/", {"model": "H100", "hours": "24", "busy": "50", "utilization": "60"}
    )
    text = page_text(response)
    # No settled epoch: 1,000 OMNIT an hour for 12 busy hours, 250 an hour for 12 idle hours.
    assert "Per day 15,000.0000 OMNIT" in text
    assert "Per 30 days 450,000.0000 OMNIT" in text
    assert "1,000.0000 OMNIT × 12.00 h = 12,000.0000 OMNIT" in text


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"hours": "abc"}, "Hours 'abc' is not a number."),
        ({"hours": "25"}, "Hours must be between 0 and 24."),
        ({"hours": "-1"}, "Hours must be between 0 and 24."),
        ({"hours": "NaN"}, "Hours 'NaN' is not a number."),
        ({"utilization": "150"}, "Utilization must be between 0 and 100."),
        ({"utilization": "1,5"}, "Utilization '1,5' is not a number."),
    ],
)
def test_the_estimate_answers_bad_input_with_a_message(client, params, message):
    response = client.get("/estimate/", params)
    assert response.status_code == 200
    assert message in page_text(response)
    assert 'aria-describedby="' in response.content.decode()


def test_the_estimate_of_an_unrated_model_says_so(client):
    response = client.get("/estimate/", {"model": "Voodoo 3"})
    assert response.status_code == 200
    assert "This model is not rated yet" in page_text(response)


@pytest.mark.parametrize("value", ["Infinity", "-inf", "NaN", "1e99999999", "1e-99999999"])
def test_the_estimate_answers_infinity_and_huge_exponents_with_a_message(client, value):
    response = client.get("/estimate/", {"hours": value})
    assert response.status_code == 200
    assert f"Hours '{value}' is not a number." in page_text(response)


def test_a_mig_instance_is_not_called_offline_when_its_gpu_earned(alice):
    start = hour0() - 3 * HOUR
    a1, a1_mig = nvml_uuid("a1"), nvml_uuid("a1-0", "MIG")
    mig = {"uuid": a1_mig, "name": "NVIDIA H100 80GB HBM3 MIG 3g.40gb",
           "memory_total_mib": 40192, "mig_parent_uuid": a1}  # fmt: skip
    rig = Rig(alice, [gpu(a1, H100), mig])
    GPU.objects.update(first_seen_at=start - timedelta(days=1))
    attest("job-m", a1_mig, start - timedelta(minutes=1))
    # Neither a MIG instance nor its GPU in MIG mode reports utilization (NVML: not supported).
    rig.report(
        samples(a1, start, util=None, used=20000)
        + samples(a1_mig, start, util=None, used=20000, total=40192, job="job-m")
    )
    ingest_all()
    settle_until(start + HOUR)

    rows = statement_rows(signed_in(alice).get("/rewards/"))
    assert "offline" not in rows[a1_mig]
    assert f"paid to its physical GPU {a1}" in rows[a1_mig]
