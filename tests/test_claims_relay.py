"""Relayed (gasless) claims on a real EVM (py-evm through eth-tester): the portal's relayer sends
a contributor's voucher and pays the gas; the tokens still go only to the payout wallet.

End to end through the API and the watcher; every refusal with its code (limits, gas-price cap,
underfunded or missing relayer, another's claim, a claim not issued, a voucher the contract
would refuse); and relays whose transaction is dropped or reverts: the claim expires, its amount
is claimable again and the wallet is paid once.
"""

import threading

import pytest
from django.db import connection
from django.test import Client
from eth_account import Account

from contributors.models import Contributor
from contributors.signin import contributor_for_sign_in
from rewards.models import Claim, Relayer
from tests.support.claims import (
    CONFIRMATIONS,
    RELAYER_ETH,
    balance,
    credit,
    post_claim,
    relay_claim,
    report_tx,
    start_evm,
)
from tests.support.rewards import OMNIT
from tests.support.siwe import ALICE, BOB, signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def evm(settings, monkeypatch):
    return start_evm(settings, monkeypatch)


def error(response) -> tuple[int, str]:
    return response.status_code, response.json().get("error")


def test_a_relayed_claim_pays_the_payout_wallet_and_the_watcher_confirms_it(evm, alice):
    credit(alice, 12 * OMNIT)
    client = signed_in(alice)
    voucher = post_claim(client).json()

    response = relay_claim(client, voucher["claim_id"])
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["status"], body["relayed"]) == ("submitted", True)
    tx_hash = body["tx_hash"]
    receipt = evm.w3.eth.get_transaction_receipt(tx_hash)
    assert receipt["status"] == 1
    assert receipt["from"] == evm.relay_key.address  # the relayer sent it and paid the gas
    assert evm.balance(ALICE.address) == 12 * OMNIT  # the tokens went to Alice only
    assert evm.eth(ALICE.address) == 0  # she paid nothing
    assert evm.eth(evm.relay_key.address) < RELAYER_ETH
    assert balance(client)["pending_wei"] == 12 * OMNIT

    evm.mine(CONFIRMATIONS)
    assert evm.watch().confirmed == 1
    claim = Claim.objects.get()
    assert (claim.status, claim.tx_hash) == (Claim.Status.CONFIRMED, tx_hash)
    assert claim.relayed_at is not None
    assert balance(client)["claimed_wei"] == 12 * OMNIT
    history = client.get("/api/v1/me/claims").json()["claims"]
    assert history[0]["tx_hash"] == tx_hash
    assert history[0]["tx_url"] == f"https://explorer.example/tx/{tx_hash}"
    assert history[0]["relayed"] is True
    assert error(relay_claim(client, voucher["claim_id"])) == (409, "claim_confirmed")
    lane = Relayer.objects.get()
    assert (lane.address, lane.sent, lane.last_tx_hash) == (evm.relay_key.address, 1, tx_hash)

    page = client.get("/claims/").content.decode()
    assert "Claim without gas (the portal sends it)" in page
    assert "sent by the portal" in page


def test_relaying_someone_elses_claim_is_404(evm, alice):
    credit(alice, OMNIT)
    claim_id = post_claim(signed_in(alice)).json()["claim_id"]
    bob = contributor_for_sign_in(BOB.address)
    assert error(relay_claim(signed_in(bob), claim_id)) == (404, "claim_not_found")
    assert error(relay_claim(signed_in(bob), 999999)) == (404, "claim_not_found")
    assert Claim.objects.get().status == Claim.Status.ISSUED


def test_relaying_needs_a_session_and_csrf(evm, alice):
    credit(alice, OMNIT)
    claim_id = post_claim(signed_in(alice)).json()["claim_id"]
    assert relay_claim(Client(), claim_id).status_code in (401, 403)
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert relay_claim(client, claim_id).status_code == 403
    assert Claim.objects.get().status == Claim.Status.ISSUED
    assert evm.balance(ALICE.address) == 0


def test_relays_per_contributor_per_day_are_limited(evm, alice, settings):
    settings.CLAIM_RELAY_PER_DAY = 1
    client = signed_in(alice)
    credit(alice, OMNIT)
    assert relay_claim(client, post_claim(client).json()["claim_id"]).status_code == 202
    credit(alice, 2 * OMNIT)
    second = post_claim(client).json()
    refused = relay_claim(client, second["claim_id"])
    assert error(refused) == (429, "relay_limit")
    assert 86000 < int(refused["Retry-After"]) <= 86401  # when the first relay leaves the day
    assert Claim.objects.get(pk=second["claim_id"]).status == Claim.Status.ISSUED
    # The wallet path stays open.
    tx_hash = evm.send(second["tx"])
    assert report_tx(client, second["claim_id"], tx_hash).status_code == 200
    assert evm.balance(ALICE.address) == 3 * OMNIT
    settings.CLAIM_RELAY_PER_DAY = 0
    credit(alice, OMNIT)
    assert error(relay_claim(client, post_claim(client).json()["claim_id"])) == (
        429, "relay_limit"
    )  # fmt: skip


def test_the_relayer_has_a_daily_budget_for_everyone(evm, alice, bob, settings):
    """Relays can revert (a voucher raced from the wallet) and still cost gas: the relayer
    sends at most CLAIM_RELAY_NETWORK_PER_DAY a day, whoever asks."""
    settings.CLAIM_RELAY_NETWORK_PER_DAY = 1
    alice_client, bob_client = signed_in(alice), signed_in(bob)
    credit(alice, OMNIT)
    credit(bob, OMNIT)
    assert relay_claim(alice_client, post_claim(alice_client).json()["claim_id"]).status_code == 202
    bobs = post_claim(bob_client).json()
    refused = relay_claim(bob_client, bobs["claim_id"])
    assert error(refused) == (429, "relay_budget_spent")
    assert int(refused["Retry-After"]) > 0
    assert Claim.objects.get(pk=bobs["claim_id"]).status == Claim.Status.ISSUED
    assert evm.balance(BOB.address) == 0


def test_a_gas_price_above_the_cap_is_refused(evm, alice, settings):
    settings.CLAIM_RELAY_MAX_GAS_PRICE_WEI = 1
    credit(alice, OMNIT)
    client = signed_in(alice)
    claim_id = post_claim(client).json()["claim_id"]
    assert error(relay_claim(client, claim_id)) == (503, "gas_price_too_high")
    assert Claim.objects.get().status == Claim.Status.ISSUED
    assert evm.eth(evm.relay_key.address) == RELAYER_ETH  # nothing was sent
    settings.CLAIM_RELAY_MAX_GAS_PRICE_WEI = 100 * 10**9
    assert relay_claim(client, claim_id).status_code == 202  # the same voucher, later
    assert evm.balance(ALICE.address) == OMNIT


def test_an_underfunded_relayer_refuses(evm, alice, settings):
    poor = Account.create()
    evm.fund(poor.address, 1000)  # 1000 wei: not enough gas for anything
    settings.CLAIM_RELAYER_KEY = "0x" + poor.key.hex().removeprefix("0x")
    credit(alice, OMNIT)
    client = signed_in(alice)
    claim_id = post_claim(client).json()["claim_id"]
    assert error(relay_claim(client, claim_id)) == (503, "relayer_underfunded")
    assert Claim.objects.get().status == Claim.Status.ISSUED
    assert evm.eth(poor.address) == 1000


def test_without_a_relayer_key_relaying_is_not_configured(evm, alice, settings):
    settings.CLAIM_RELAYER_KEY = ""
    credit(alice, OMNIT)
    client = signed_in(alice)
    claim_id = post_claim(client).json()["claim_id"]
    assert error(relay_claim(client, claim_id)) == (503, "relay_not_configured")
    assert "Claim without gas" not in client.get("/claims/").content.decode()


def test_only_an_issued_voucher_is_relayed(evm, alice):
    credit(alice, OMNIT)
    client = signed_in(alice)
    voucher = post_claim(client).json()
    report_tx(client, voucher["claim_id"], evm.send(voucher["tx"]))
    assert error(relay_claim(client, voucher["claim_id"])) == (409, "claim_submitted")


def test_a_voucher_already_paid_is_not_sent_again(evm, alice):
    credit(alice, OMNIT)
    client = signed_in(alice)
    voucher = post_claim(client).json()
    evm.send(voucher["tx"], sender=evm.stranger)  # paid outside the portal, not reported
    assert error(relay_claim(client, voucher["claim_id"])) == (409, "claim_would_revert")
    assert evm.eth(evm.relay_key.address) == RELAYER_ETH  # no gas spent on a doomed call
    assert evm.balance(ALICE.address) == OMNIT


def expire(evm, claim_id: int) -> None:
    """Let the chain pass the claim's deadline with enough confirmations; the watcher expires."""
    evm.travel_to(Claim.objects.get(pk=claim_id).deadline + 1)
    evm.mine(CONFIRMATIONS + 1)
    evm.watch()
    assert Claim.objects.get(pk=claim_id).status == Claim.Status.EXPIRED


def test_a_dropped_relay_expires_and_its_amount_is_paid_once_later(evm, alice, settings):
    settings.CLAIM_VOUCHER_TTL_S = 60
    credit(alice, 4 * OMNIT)
    client = signed_in(alice)
    first = post_claim(client).json()
    before = evm.tester.take_snapshot()
    assert relay_claim(client, first["claim_id"]).status_code == 202
    evm.tester.revert_to_snapshot(before)  # the transaction is gone: dropped (or reorged out)
    assert evm.balance(ALICE.address) == 0
    assert balance(client)["pending_wei"] == 4 * OMNIT

    expire(evm, first["claim_id"])
    assert balance(client)["claimable_wei"] == 4 * OMNIT
    settings.CLAIM_VOUCHER_TTL_S = 3600
    second = post_claim(client).json()
    assert second["cumulative_amount"] == str(4 * OMNIT)
    response = relay_claim(client, second["claim_id"])  # the relayer reuses the dropped nonce
    assert response.status_code == 202, response.content
    evm.mine(CONFIRMATIONS)
    evm.watch()
    assert evm.balance(ALICE.address) == 4 * OMNIT
    assert balance(client) == {
        "earned_wei": 4 * OMNIT, "claimed_wei": 4 * OMNIT, "pending_wei": 0, "claimable_wei": 0
    }  # fmt: skip


def test_a_reverted_relay_expires_and_nothing_is_paid_twice(evm, alice, settings):
    settings.CLAIM_VOUCHER_TTL_S = 60
    credit(alice, 4 * OMNIT)
    client = signed_in(alice)
    first = post_claim(client).json()
    evm.tester.disable_auto_mine_transactions()
    evm.distributor.functions.pause().transact({"from": evm.owner})  # mined first
    assert relay_claim(client, first["claim_id"]).status_code == 202
    evm.tester.enable_auto_mine_transactions()
    tx_hash = Claim.objects.get().tx_hash
    assert evm.w3.eth.get_transaction_receipt(tx_hash)["status"] == 0  # reverted: paused
    assert evm.balance(ALICE.address) == 0

    expire(evm, first["claim_id"])
    assert balance(client)["claimable_wei"] == 4 * OMNIT
    evm.transact(evm.distributor.functions.unpause())
    settings.CLAIM_VOUCHER_TTL_S = 3600
    second = post_claim(client).json()
    assert relay_claim(client, second["claim_id"]).status_code == 202
    evm.mine(CONFIRMATIONS)
    evm.watch()
    assert evm.balance(ALICE.address) == 4 * OMNIT
    assert evm.claimed(ALICE.address) == 4 * OMNIT
    assert balance(client)["claimed_wei"] == 4 * OMNIT


def test_a_relay_racing_the_wallet_reverts_and_pays_once(evm, alice):
    credit(alice, 5 * OMNIT)
    client = signed_in(alice)
    voucher = post_claim(client).json()
    evm.tester.disable_auto_mine_transactions()
    evm.w3.eth.send_transaction(
        {"from": evm.stranger, "to": voucher["tx"]["to"], "data": voucher["tx"]["data"],
         "gas": 300_000}
    )  # fmt: skip
    assert relay_claim(client, voucher["claim_id"]).status_code == 202
    evm.tester.enable_auto_mine_transactions()
    relayed = Claim.objects.get().tx_hash
    assert evm.w3.eth.get_transaction_receipt(relayed)["status"] == 0  # NothingToClaim
    evm.mine(CONFIRMATIONS)
    evm.watch()
    claim = Claim.objects.get()
    assert claim.status == Claim.Status.CONFIRMED
    assert claim.tx_hash != relayed  # confirmed by the payment the chain made
    assert evm.balance(ALICE.address) == 5 * OMNIT


@pytest.mark.django_db(transaction=True)
def test_two_relays_at_once_use_two_nonces(evm):
    people = [contributor_for_sign_in(ALICE.address), contributor_for_sign_in(BOB.address)]
    claim_ids = []
    for person in people:
        credit(person, 2 * OMNIT)
        claim_ids.append(post_claim(signed_in(person)).json()["claim_id"])
    barrier = threading.Barrier(2)
    answers = []

    def relay(person, claim_id):
        try:
            client = signed_in(Contributor.objects.get(pk=person.pk))
            barrier.wait()
            answers.append(relay_claim(client, claim_id).status_code)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=relay, args=pair) for pair in zip(people, claim_ids, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [202, 202]
    assert evm.balance(ALICE.address) == evm.balance(BOB.address) == 2 * OMNIT
    nonces = sorted(
        evm.w3.eth.get_transaction(claim.tx_hash)["nonce"] for claim in Claim.objects.all()
    )
    assert nonces == [0, 1]


def test_staff_see_the_relayer_on_healthz_and_in_the_admin(evm, client):
    staff = Contributor.objects.create(username="ops", is_staff=True, is_superuser=True)
    client.force_login(staff)
    relayer = client.get("/healthz").json()["relayer"]
    assert relayer["address"] == evm.relay_key.address
    assert relayer["balance_wei"] == str(RELAYER_ETH)
    assert "relayer" not in Client().get("/healthz").json()
    page = client.get("/admin/rewards/claim/").content.decode()
    assert evm.relay_key.address in page
    assert "1.000000 ETH" in page
