"""Tax-ready exports through HTTP, on a ledger made by real settlement and claims on a real EVM
(py-evm through eth-tester): token prices kept by admins or read from a Chainlink-style feed
(contracts/TestPriceFeed.sol), the rewards CSV's values at each epoch's close, and the
universal CSV that Koinly and CoinTracking import.

Every expected value is computed here independently of the portal: Decimal at 200 digits of
precision, quantized half-even, and cross-checked with Fraction.
"""

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from rewards import tasks
from rewards.models import Claim, ClaimEvent, Epoch, RewardEntry, TokenPrice
from rewards.views import CSV_COLUMNS
from tests.support.claims import CONFIRMATIONS, credit, post_claim, report_tx, start_evm
from tests.support.rewards import (
    A1,
    A2,
    B1,
    H100,
    RTX_4090,
    Rig,
    attest,
    epoch_start,
    gpu,
    ingest_all,
    samples,
    settle,
)
from tests.support.siwe import ALICE, signed_in

pytestmark = pytest.mark.django_db

UNIVERSAL = [
    "Date", "Sent Amount", "Sent Currency", "Received Amount", "Received Currency",
    "Fee Amount", "Fee Currency", "Net Worth Amount", "Net Worth Currency", "Label",
    "Description", "TxHash",
]  # fmt: skip
TAX_URL = "/rewards/export-universal.csv"
CSV_URL = "/rewards/export.csv"


@pytest.fixture
def evm(settings, monkeypatch):
    return start_evm(settings, monkeypatch)


# --- helpers: expectations computed apart from the portal -------------------------------------


def worth(wei: int, price: str) -> str:
    """wei × price / 10^18 in the currency, to cents half-even, by Decimal at 200 digits."""
    with localcontext() as ctx:
        ctx.prec = 200
        exact = Decimal(wei) * Decimal(price) / Decimal(10**18)
        text = str(exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))
    # The same by Fraction: Python rounds a Fraction half to even.
    cents = round(Fraction(wei) * Fraction(price) / 10**18 * 100)
    assert text == f"{cents // 100}.{cents % 100:02d}"
    return text


def eighteen(wei: int) -> str:
    """OMNIT with all 18 decimals, by string arithmetic on the digits."""
    digits = str(wei).rjust(19, "0")
    return f"{int(digits[:-18])}.{digits[-18:]}"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def download(client, url: str, **params) -> list[dict]:
    """The streamed CSV as Python's csv module reads it: a dict per row, by header."""
    response = client.get(url, params)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response.streaming
    assert response["Content-Disposition"].startswith("attachment; filename=")
    text = b"".join(response.streaming_content).decode("utf-8")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    header = rows[0]
    assert all(len(row) == len(header) for row in rows)
    return [dict(zip(header, row, strict=True)) for row in rows[1:]]


def header_of(client, url: str) -> list[str]:
    response = client.get(url)
    text = b"".join(response.streaming_content).decode("utf-8")
    return next(csv.reader(io.StringIO(text, newline="")))


def quote(at: datetime, price: str, currency: str = "USD", **extra) -> TokenPrice:
    return TokenPrice.objects.create(currency=currency, at=at, price=price, **extra)


def two_settled_epochs(alice, bob) -> tuple[Epoch, Epoch]:
    """Two epochs through the agent API and real settlement: alice's H100 idle then busy with an
    attested job, her RTX 4090 idle in both, and bob's RTX 4090 sharing the idle pool."""
    first = epoch_start(4)
    second = first + timedelta(hours=1)
    rig = Rig(alice, [gpu(A1, H100), gpu(A2, RTX_4090)])
    bobs = Rig(bob, [gpu(B1, RTX_4090)])
    attest("job-1", A1, second - timedelta(minutes=10))
    rig.report(
        samples(A1, first, used=1024)
        + samples(A2, first, used=500, total=24564)
        + samples(A1, second, util=37, used=60000, job="job-1")
        + samples(A2, second, used=3000, total=24564)
    )
    bobs.report(samples(B1, first, used=2000, total=24564) + samples(B1, second, total=24564))
    ingest_all()
    return settle(first), settle(second)


def earned_in(contributor, epoch: Epoch) -> int:
    return sum(
        RewardEntry.objects.filter(contributor=contributor, epoch=epoch).values_list(
            "amount_wei", flat=True
        )
    )


def claim_on_chain(evm, client) -> tuple[Claim, str]:
    """Ask for a voucher, send it from another account, report it, confirm it by the watcher."""
    voucher = post_claim(client).json()
    tx_hash = evm.send(voucher["tx"])
    assert report_tx(client, voucher["claim_id"], tx_hash).status_code == 200
    evm.mine(CONFIRMATIONS)
    evm.watch()
    claim = Claim.objects.get(pk=voucher["claim_id"])
    assert claim.status == Claim.Status.CONFIRMED
    return claim, tx_hash


def block_time(evm, tx_hash: str) -> datetime:
    receipt = evm.w3.eth.get_transaction_receipt(tx_hash)
    stamp = evm.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    return datetime.fromtimestamp(stamp, UTC)


# --- the price table: admins keep it through /admin/ ------------------------------------------


def test_admins_add_and_correct_quotes_exactly_and_cannot_edit_the_feeds(admin_client):
    add = reverse("admin:rewards_tokenprice_add")
    form = {"currency": "usd", "at_0": "2025-03-01", "at_1": "12:00:00", "notes": "OTC desk"}
    assert admin_client.get(add).status_code == 200
    response = admin_client.post(add, {**form, "price": "0.04210000000000000000000001"})
    assert response.status_code == 302, response.content.decode()
    price = TokenPrice.objects.get()
    assert (price.currency, price.price, price.source) == (
        "USD",
        "0.04210000000000000000000001",
        "admin",
    )
    assert price.at == datetime(2025, 3, 1, 12, tzinfo=UTC)

    # Not exact decimal text, not positive: refused, nothing stored.
    for bad in (
        "1e-3",
        "0.1.2",
        "-1",
        "0",
        "",
        "NaN",
        "1,5",
        "\u0661\u066b\u0665",
    ):  # the last: Arabic-Indic 1.5
        again = admin_client.post(add, {**form, "at_1": "13:00:00", "price": bad})
        assert again.status_code == 200 and "errorlist" in again.content.decode(), bad
    # One quote per currency and moment.
    twice = admin_client.post(add, {**form, "price": "1"})
    assert twice.status_code == 200 and TokenPrice.objects.count() == 1

    change = reverse("admin:rewards_tokenprice_change", args=[price.pk])
    edited = admin_client.post(change, {**form, "price": "0.0500"})
    assert edited.status_code == 302
    price.refresh_from_db()
    assert price.price == "0.05"  # canonical: no trailing zeros

    fed = quote(datetime(2025, 3, 2, tzinfo=UTC), "0.06", source="feed", round_id="7")
    page = admin_client.get(reverse("admin:rewards_tokenprice_change", args=[fed.pk]))
    assert page.status_code == 200 and 'name="price"' not in page.content.decode()
    refused = admin_client.post(
        reverse("admin:rewards_tokenprice_change", args=[fed.pk]), {**form, "price": "9"}
    )
    assert refused.status_code == 403
    fed.refresh_from_db()
    assert fed.price == "0.06"
    listing = admin_client.get(reverse("admin:rewards_tokenprice_changelist"), {"source": "feed"})
    assert listing.status_code == 200


# --- the feed: a Chainlink AggregatorV3Interface on the EVM -----------------------------------


def deploy_feed(evm, decimals: int):
    return evm.deploy("TestPriceFeed", decimals, "OMNIT / USD")


def test_the_feed_task_records_each_round_exactly_once_and_skips_unusable_ones(evm, settings):
    feed = deploy_feed(evm, 8)
    settings.PRICE_FEED_ADDRESS = feed.address
    t0 = 1_700_000_000
    evm.transact(feed.functions.setRound(1, 421_000_000, t0, t0))  # 4.21
    evm.transact(feed.functions.setRound(2, 0, t0 + 60, t0 + 60))  # no answer: skipped
    evm.transact(feed.functions.setRound(3, 123_456_789, t0 + 120, t0 + 120))  # 1.23456789
    evm.transact(feed.functions.setRound(4, 500_000_000, t0 + 180, 0))  # incomplete: skipped

    assert tasks.record_token_prices.apply().result == 2
    quotes = {q.round_id: q for q in TokenPrice.objects.all()}
    assert set(quotes) == {"1", "3"}
    assert quotes["1"].price == "4.21"
    assert quotes["3"].price == "1.23456789"
    assert Fraction(quotes["3"].price) == Fraction(123_456_789, 10**8)
    assert quotes["3"].at == datetime.fromtimestamp(t0 + 120, UTC)
    assert {(q.source, q.currency, q.feed) for q in quotes.values()} == {
        ("feed", "USD", feed.address)
    }

    # Nothing new: nothing recorded twice. New rounds, two at once: both (walking back).
    assert tasks.record_token_prices.apply().result == 0
    evm.transact(feed.functions.setRound(5, 99, t0 + 240, t0 + 240))  # 0.00000099
    evm.transact(feed.functions.setRound(6, 10**8, t0 + 300, t0 + 300))
    # An answer carried over from an older round is not a price of its own time.
    evm.transact(feed.functions.setRoundAnsweredIn(7, 2 * 10**8, t0 + 360, t0 + 360, 6))
    assert tasks.record_token_prices.apply().result == 2
    assert dict(TokenPrice.objects.values_list("round_id", "price")) == {
        "1": "4.21", "3": "1.23456789", "5": "0.00000099", "6": "1",
    }  # fmt: skip


def test_an_18_decimal_feed_keeps_every_digit_and_an_admins_quote_wins_its_second(evm, settings):
    feed = deploy_feed(evm, 18)
    settings.PRICE_FEED_ADDRESS = feed.address
    settings.PRICE_CURRENCY = "EUR"
    t0 = 1_750_000_000
    evm.transact(feed.functions.setRound(1, 3 * 10**18 + 7, t0, t0))
    evm.transact(feed.functions.setRound(2, 2**100, t0 + 1, t0 + 1))  # 1.27e12, every digit
    evm.transact(feed.functions.setRound(3, 5, t0 + 2, t0 + 2))
    quote(datetime.fromtimestamp(t0 + 2, UTC), "0.5", currency="EUR")  # an admin's, same second
    evm.transact(feed.functions.setRound(4, 2**254, t0 + 3, t0 + 3))  # absurd: not a price

    assert tasks.record_token_prices.apply().result == 2
    prices = dict(TokenPrice.objects.filter(source="feed").values_list("round_id", "price"))
    assert prices == {"1": "3.000000000000000007", "2": "1267650600228.229401496703205376"}
    assert Fraction(prices["2"]) == Fraction(2**100, 10**18)
    assert TokenPrice.objects.get(round_id="").price == "0.5"
    assert set(TokenPrice.objects.values_list("currency", flat=True)) == {"EUR"}


def test_without_a_feed_or_a_node_the_task_does_nothing(settings):
    settings.PRICE_FEED_ADDRESS = ""
    assert tasks.record_token_prices.apply().result == 0
    settings.PRICE_FEED_ADDRESS = "0x" + "11" * 20
    settings.WEB3_PROVIDER_URI = ""
    assert tasks.record_token_prices.apply().result == 0
    assert not TokenPrice.objects.exists()


def test_the_csv_values_entries_at_the_feeds_price_read_on_chain(evm, settings, alice):
    feed = deploy_feed(evm, 8)
    settings.PRICE_FEED_ADDRESS = feed.address
    entry = credit(alice, 1234 * 10**18 + 987654321987654321)
    close = entry.epoch.end
    stamp = int((close - timedelta(minutes=5)).timestamp())
    evm.transact(feed.functions.setRound(1, 4_217_654_321, stamp, stamp))  # 42.17654321
    tasks.record_token_prices.apply()

    (row,) = download(signed_in(alice), CSV_URL)
    assert row["omnit_price"] == "42.17654321"
    assert row["price_at"] == iso(close - timedelta(minutes=5))
    assert row["value"] == worth(entry.amount_wei, "42.17654321")
    assert (row["currency"], row["value_note"]) == ("USD", "")


# --- the rewards CSV --------------------------------------------------------------------------


def test_the_csv_values_each_settled_entry_at_its_epochs_close_or_says_why_not(
    alice, bob, settings
):
    first, second = two_settled_epochs(alice, bob)
    settings.PRICE_MAX_AGE_S = 3600
    # In effect at the first close; 90 minutes old, too old, at the second.
    quote(first.end - timedelta(minutes=30), "0.0421")
    quote(second.end + timedelta(seconds=1), "7")  # after the second close: never used
    quote(first.end, "123", currency="EUR")  # another currency

    rows = download(signed_in(alice), CSV_URL)
    assert list(rows[0]) == CSV_COLUMNS
    entries = {
        (e.epoch_id, e.gpu.uuid, e.kind): e
        for e in RewardEntry.objects.filter(contributor=alice).select_related("gpu")
    }
    assert len(rows) == len(entries) >= 4
    for row in rows:
        epoch = first if row["epoch_start"] == iso(first.start) else second
        entry = entries[(epoch.pk, row["gpu_uuid"], row["kind"])]
        assert row["amount_wei"] == str(entry.amount_wei)
        assert row["currency"] == "USD"
        if epoch == first:
            assert row["omnit_price"] == "0.0421"
            assert row["price_at"] == iso(first.end - timedelta(minutes=30))
            assert row["value"] == worth(entry.amount_wei, "0.0421")
            assert row["value_note"] == ""
        else:  # stale: empty, never the old price nor the later one
            assert (row["omnit_price"], row["price_at"], row["value"]) == ("", "", "")
            assert row["value_note"] == (
                f"no USD price: the latest before {iso(second.end)} is from "
                f"{iso(first.end - timedelta(minutes=30))}, older than PRICE_MAX_AGE_S (3600 s)"
            )
    assert {row["kind"] for row in rows} == {"compute", "idle"}

    # Within the window, the old quote counts; in another currency, nothing is known.
    settings.PRICE_MAX_AGE_S = 5400
    rows = download(signed_in(alice), CSV_URL)
    later = [r for r in rows if r["epoch_start"] == iso(second.start)]
    assert later and all(r["omnit_price"] == "0.0421" and r["value"] for r in later)
    settings.PRICE_CURRENCY = "GBP"
    for row in download(signed_in(alice), CSV_URL):
        assert (row["currency"], row["omnit_price"], row["value"]) == ("GBP", "", "")
        assert row["value_note"].startswith("no GBP price: none recorded at or before ")


def test_values_round_half_to_even_at_the_cent_and_stay_exact_past_2_to_the_63(alice, settings):
    settings.PRICE_MAX_AGE_S = 10**9  # credit()'s epochs lie in 2020, an hour apart
    quote(datetime(2019, 12, 31, 23, tzinfo=UTC), "1")
    halves = {  # OMNIT at 1 USD: exactly half a cent each, to the even cent
        5 * 10**15: "0.00",  # 0.005
        15 * 10**15: "0.02",  # 0.015
        25 * 10**15: "0.02",  # 0.025 (half up would say 0.03)
        35 * 10**15: "0.04",  # 0.035
        1: "0.00",  # one wei
    }
    for wei in halves:
        credit(alice, wei)
    huge = credit(alice, 2**64 + 987654321)  # past 2^63: SQLite's REAL would round it
    quote(huge.epoch.end - timedelta(seconds=1), "31415.926535897932384626433832795")

    rows = {r["amount_wei"]: r for r in download(signed_in(alice), CSV_URL)}
    for wei, cents in halves.items():
        assert rows[str(wei)]["value"] == worth(wei, "1") == cents, wei
    big = rows[str(2**64 + 987654321)]
    assert big["amount_omnit"] == eighteen(2**64 + 987654321)
    assert big["value"] == worth(2**64 + 987654321, "31415.926535897932384626433832795")
    assert big["omnit_price"] == "31415.926535897932384626433832795"

    (tax_row,) = [
        r for r in download(signed_in(alice), TAX_URL) if r["Date"] == iso(huge.epoch.end)
    ]
    assert tax_row["Received Amount"] == eighteen(2**64 + 987654321)
    assert tax_row["Net Worth Amount"] == big["value"]


# --- the universal export ---------------------------------------------------------------------


def test_the_universal_export_lists_rewards_per_epoch_and_claims_with_their_hashes(
    evm, alice, bob, settings
):
    first, second = two_settled_epochs(alice, bob)
    settings.PRICE_MAX_AGE_S = 3600
    quote(first.end - timedelta(minutes=30), "0.0421")
    client = signed_in(alice)
    claim, tx_hash = claim_on_chain(evm, client)
    paid_at = block_time(evm, tx_hash)
    quote(paid_at - timedelta(seconds=30), "0.0437")

    rows = download(client, TAX_URL)
    assert header_of(client, TAX_URL) == UNIVERSAL
    first_wei, second_wei = earned_in(alice, first), earned_in(alice, second)
    assert first_wei > 0 and second_wei > 0
    reward_1, reward_2, payment = rows
    assert reward_1 == {
        "Date": iso(first.end), "Sent Amount": "", "Sent Currency": "",
        "Received Amount": eighteen(first_wei), "Received Currency": "OMNIT",
        "Fee Amount": "", "Fee Currency": "",
        "Net Worth Amount": worth(first_wei, "0.0421"), "Net Worth Currency": "USD",
        "Label": "reward", "Description": reward_1["Description"], "TxHash": "",
    }  # fmt: skip
    assert reward_1["Description"].startswith(
        f"OmniTensor GPU rewards, epoch {iso(first.start)} to {iso(first.end)} (idle "
    )
    # The second epoch's close has no price within an hour: empty, and the reason.
    assert reward_2["Date"] == iso(second.end)
    assert reward_2["Received Amount"] == eighteen(second_wei)
    assert (reward_2["Net Worth Amount"], reward_2["Net Worth Currency"]) == ("", "")
    assert reward_2["Label"] == "reward"
    assert "compute " in reward_2["Description"] and "idle " in reward_2["Description"]
    assert reward_2["Description"].endswith(
        f"; no USD price: the latest before {iso(second.end)} is from "
        f"{iso(first.end - timedelta(minutes=30))}, older than PRICE_MAX_AGE_S (3600 s)"
    )
    # The claim: what the distributor paid alice's wallet, when its block was mined.
    assert claim.amount_wei == first_wei + second_wei
    assert payment == {
        "Date": iso(paid_at), "Sent Amount": eighteen(claim.amount_wei), "Sent Currency": "OMNIT",
        "Received Amount": "", "Received Currency": "", "Fee Amount": "", "Fee Currency": "",
        "Net Worth Amount": worth(claim.amount_wei, "0.0437"), "Net Worth Currency": "USD",
        "Label": "", "Description": payment["Description"], "TxHash": tx_hash,
    }  # fmt: skip
    assert ALICE.address in payment["Description"]
    assert f"#{claim.pk}" in payment["Description"]
    assert "transfer between own wallets" in payment["Description"]
    assert evm.balance(ALICE.address) == claim.amount_wei

    # bob sees his rewards only: none of alice's epochs' sums, no claim of hers.
    theirs = download(signed_in(bob), TAX_URL)
    assert [r["Label"] for r in theirs] == ["reward", "reward"]
    assert [r["Received Amount"] for r in theirs] == [
        eighteen(earned_in(bob, first)),
        eighteen(earned_in(bob, second)),
    ]
    assert tx_hash not in str(theirs)
    # And alice's rewards CSV has none of bob's GPUs.
    assert {r["gpu_uuid"] for r in download(client, CSV_URL)} == {A1, A2}


def test_one_payment_that_confirms_two_vouchers_is_one_row_and_amounts_past_2_63_are_exact(
    evm, alice, settings
):
    client = signed_in(alice)
    credit(alice, 2**63 + 1)
    first = post_claim(client).json()  # issued, never sent
    credit(alice, 2**70 + 3)
    second = post_claim(client).json()  # covers both: cumulative of everything
    assert int(second["cumulative_amount"]) == 2**63 + 1 + 2**70 + 3
    tx_hash = evm.send(second["tx"])
    evm.mine(CONFIRMATIONS)
    evm.watch()
    assert set(Claim.objects.values_list("status", flat=True)) == {"confirmed"}

    rows = download(client, TAX_URL)
    assert [r["Label"] for r in rows] == ["reward", "reward", ""]
    assert [r["Received Amount"] for r in rows[:2]] == [eighteen(2**63 + 1), eighteen(2**70 + 3)]
    payment = rows[2]
    assert payment["Sent Amount"] == eighteen(2**63 + 1 + 2**70 + 3)
    assert payment["TxHash"] == tx_hash
    assert f"#{first['claim_id']}, #{second['claim_id']}" in payment["Description"]
    # No price recorded: empty, and the note says so.
    assert payment["Net Worth Amount"] == ""
    assert "no USD price: none recorded at or before" in payment["Description"]

    # An event read before block times were recorded: the portal's own time, said so.
    ClaimEvent.objects.update(block_time=None)
    (payment,) = [r for r in download(client, TAX_URL) if r["TxHash"]]
    assert payment["Date"] == iso(ClaimEvent.objects.get().seen_at)
    assert "not the block's" in payment["Description"]


def test_a_year_selects_rewards_by_their_close_and_claims_by_their_block(evm, alice):
    client = signed_in(alice)
    early = credit(alice, 10**18)  # an epoch of 2020
    _, tx_hash = claim_on_chain(evm, client)
    paid_year = block_time(evm, tx_hash).year
    assert early.epoch.end.year == 2020 != paid_year

    only_2020 = download(client, TAX_URL, year="2020")
    assert [r["Label"] for r in only_2020] == ["reward"]
    paid = download(client, TAX_URL, year=str(paid_year))
    assert [r["TxHash"] for r in paid] == [tx_hash]
    assert download(client, TAX_URL, year="2019") == []
    assert len(download(client, CSV_URL, year="2020")) == 1
    assert download(client, CSV_URL, year="2021") == []
    response = client.get(TAX_URL, {"year": "2020"})
    assert 'filename="omnitensor-tax-universal-2020-' in response["Content-Disposition"]


@pytest.mark.parametrize(
    "params",
    [
        {"year": "abc"}, {"year": "20 25"}, {"year": "-2025"}, {"year": "1e3"}, {"year": "0"},
        {"year": "99999"}, {"year": "9999"}, {"year": "1969"}, {"year": "\uff12\uff10\uff12\uff15"},
        {"year": "\u0662\u0660\u0662\u0665"}, {"year": "2025" * 1000}, {"year": "2025.0"},
    ],
)  # fmt: skip
def test_junk_years_are_refused_with_400_never_5xx(alice, params):
    client = signed_in(alice)
    credit(alice, 10**18)
    for url in (TAX_URL, CSV_URL):
        response = client.get(url, params)
        assert response.status_code == 400, (url, params)
        assert "year" in response.content.decode()


@pytest.mark.parametrize(
    "params",
    [{"days": "x"}, {"statement": "junk"}, {"year": ""}, {"format": "xlsx", "page": "-1"},
     {"year": ["2020", "junk"]}, {"\x7f": "\x7f"}],
)  # fmt: skip
def test_other_parameters_are_ignored(alice, params):
    client = signed_in(alice)
    credit(alice, 10**18)
    for url in (TAX_URL, CSV_URL):
        response = client.get(url, params)
        assert response.status_code in (200, 400), (url, params)
        if response.status_code == 200:
            b"".join(response.streaming_content)


def test_the_exports_need_sign_in(client):
    for url in (TAX_URL, CSV_URL):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/signin/?next=")


def test_the_exports_take_the_same_queries_for_1_or_6_epochs(evm, alice):
    client = signed_in(alice)
    credit(alice, 10**18)
    quote(datetime(2020, 1, 1, tzinfo=UTC), "2")
    claim_on_chain(evm, client)

    def queries(url: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            b"".join(client.get(url).streaming_content)
        return len(captured)

    small = {url: queries(url) for url in (TAX_URL, CSV_URL)}
    for _ in range(5):
        credit(alice, 3 * 10**18)
    claim_on_chain(evm, client)
    big = {url: queries(url) for url in (TAX_URL, CSV_URL)}
    assert big == small
    assert all(n <= 10 for n in big.values()), big
    assert len(download(client, TAX_URL)) == 6 + 2


def test_the_rewards_and_claims_pages_link_the_exports(alice, settings):
    settings.PRICE_CURRENCY = "EUR"
    client = signed_in(alice)
    page = client.get("/rewards/").content.decode()
    assert f'href="{TAX_URL}"' in page and f'href="{CSV_URL}"' in page
    assert f'href="{TAX_URL}?year=' in page
    assert "value in EUR" in page
    assert f'href="{TAX_URL}"' in client.get("/claims/").content.decode()
