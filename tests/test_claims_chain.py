"""The whole claim flow on a real EVM (py-evm through eth-tester), with the committed contracts.

Earn through settlement, ask the portal for a voucher, send it, report the hash, let the
watcher see the Claimed event with enough confirmations; and every way a voucher must not pay:
replayed, forged, expired, for another account, paused, from a rotated-out signer.
"""

import time

import pytest

from contributors.signin import link_wallet
from rewards import watcher
from rewards.models import ChainCursor, Claim, ClaimEvent
from rewards.vouchers import Voucher
from tests.support.claims import (
    CONFIRMATIONS,
    REVERTS,
    balance,
    credit,
    error_selector,
    post_claim,
    report_tx,
    revert_data,
    start_evm,
)
from tests.support.rewards import (
    A1,
    H100,
    IDLE_POOL,
    OMNIT,
    Rig,
    epoch_start,
    gpu,
    ingest_all,
    samples,
    settle,
)
from tests.support.siwe import ALICE, BOB, CAROL, signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def evm(settings, monkeypatch):
    return start_evm(settings, monkeypatch)


def reverts_with(evm, tx: dict, error: str, sender=None) -> None:
    with pytest.raises(REVERTS) as caught:
        evm.send(tx, sender)
    assert "0x" + revert_data(caught.value)[:4].hex() == error_selector(error)


def test_earned_rewards_are_claimed_sent_watched_and_confirmed(evm, alice):
    start = epoch_start()
    rig = Rig(alice, [gpu(A1, H100)])
    rig.report(samples(A1, start))  # idle all epoch: the whole idle pool
    ingest_all()
    settle(start)
    client = signed_in(alice)
    assert balance(client) == {
        "earned_wei": IDLE_POOL, "claimed_wei": 0, "pending_wei": 0, "claimable_wei": IDLE_POOL
    }  # fmt: skip

    response = post_claim(client)
    assert response.status_code == 201, response.content
    voucher = response.json()
    assert voucher["account"] == ALICE.address
    assert voucher["cumulative_amount"] == str(IDLE_POOL)
    assert voucher["distributor"] == evm.distributor.address
    assert voucher["tx"]["to"] == evm.distributor.address
    assert balance(client)["pending_wei"] == IDLE_POOL
    assert balance(client)["claimable_wei"] == 0

    tx_hash = evm.send(voucher["tx"])  # sent by another account: the tokens still go to Alice
    assert report_tx(client, voucher["claim_id"], tx_hash).json()["status"] == "submitted"
    assert evm.balance(ALICE.address) == IDLE_POOL

    evm.watch()  # not yet CONFIRMATIONS blocks on top
    assert Claim.objects.get().status == Claim.Status.SUBMITTED
    evm.mine(CONFIRMATIONS)
    result = evm.watch()
    assert result.events == 1 and result.confirmed == 1

    claim = Claim.objects.get()
    assert claim.status == Claim.Status.CONFIRMED
    assert claim.tx_hash == tx_hash
    assert balance(client) == {
        "earned_wei": IDLE_POOL, "claimed_wei": IDLE_POOL, "pending_wei": 0, "claimable_wei": 0
    }  # fmt: skip
    assert post_claim(client).json()["error"] == "nothing_to_claim"
    history = client.get("/api/v1/me/claims").json()["claims"]
    assert history[0]["status"] == "confirmed"
    assert history[0]["tx_url"] == f"https://explorer.example/tx/{tx_hash}"


def test_watching_twice_changes_nothing(evm, alice):
    credit(alice, 7 * OMNIT)
    client = signed_in(alice)
    evm.send(post_claim(client).json()["tx"])
    evm.mine()
    evm.watch()
    again = evm.watch()
    assert again.events == 0
    assert ClaimEvent.objects.count() == 1
    assert balance(client)["claimed_wei"] == 7 * OMNIT


def test_a_replayed_voucher_reverts_and_pays_once(evm, alice):
    credit(alice, 5 * OMNIT)
    voucher = post_claim(signed_in(alice)).json()
    evm.send(voucher["tx"])
    reverts_with(evm, voucher["tx"], "NothingToClaim")
    assert evm.balance(ALICE.address) == 5 * OMNIT


def test_a_forged_voucher_reverts(evm, alice):
    credit(alice, 5 * OMNIT)
    voucher = post_claim(signed_in(alice)).json()
    forged = Voucher(
        evm.w3.eth.chain_id, evm.distributor.address, ALICE.address, 500 * OMNIT,
        voucher["deadline"],
    )  # fmt: skip
    signature = forged.sign(CAROL.key)  # not the claim signer
    data = evm.distributor.encode_abi(
        "claim",
        args=[ALICE.address, 500 * OMNIT, voucher["deadline"], bytes.fromhex(signature[2:])],
    )
    reverts_with(evm, {"to": evm.distributor.address, "data": data}, "InvalidSignature")
    # A genuine signature with a raised amount is a forgery too.
    data = evm.distributor.encode_abi(
        "claim",
        args=[
            ALICE.address,
            500 * OMNIT,
            voucher["deadline"],
            bytes.fromhex(voucher["signature"][2:]),
        ],
    )
    reverts_with(evm, {"to": evm.distributor.address, "data": data}, "InvalidSignature")
    assert evm.balance(ALICE.address) == 0


def test_a_voucher_for_another_account_is_rejected(evm, alice):
    credit(alice, 5 * OMNIT)
    voucher = post_claim(signed_in(alice)).json()
    args = [BOB.address, int(voucher["cumulative_amount"]), voucher["deadline"]]
    data = evm.distributor.encode_abi(
        "claim", args=[*args, bytes.fromhex(voucher["signature"][2:])]
    )
    reverts_with(evm, {"to": evm.distributor.address, "data": data}, "InvalidSignature")
    assert evm.balance(BOB.address) == 0


def test_an_expired_voucher_reverts_and_its_amount_is_claimable_again(evm, alice, settings):
    settings.CLAIM_VOUCHER_TTL_S = 60
    credit(alice, 5 * OMNIT)
    client = signed_in(alice)
    first = post_claim(client).json()
    assert post_claim(client).json()["error"] == "nothing_to_claim"

    evm.travel_to(first["deadline"] + 1)
    evm.mine(1)
    reverts_with(evm, first["tx"], "VoucherExpired")
    # Until the watcher has read a confirmed block past the deadline, the amount stays pending.
    assert balance(client)["pending_wei"] == 5 * OMNIT
    evm.watch()
    assert Claim.objects.get().status == Claim.Status.ISSUED
    evm.mine(CONFIRMATIONS)
    assert evm.watch().expired == 1
    assert Claim.objects.get().status == Claim.Status.EXPIRED
    assert balance(client)["claimable_wei"] == 5 * OMNIT

    settings.CLAIM_VOUCHER_TTL_S = 7200
    again = post_claim(client)
    assert again.status_code == 201
    assert again.json()["cumulative_amount"] == str(5 * OMNIT)
    evm.send(again.json()["tx"])
    evm.mine()
    evm.watch()
    assert evm.balance(ALICE.address) == 5 * OMNIT
    assert balance(client)["claimed_wei"] == 5 * OMNIT
    assert report_tx(client, first["claim_id"], "0x" + "11" * 32).json()["error"] == (
        "claim_expired"
    )


def test_a_claim_sent_outside_the_portal_is_confirmed(evm, alice):
    credit(alice, 3 * OMNIT)
    client = signed_in(alice)
    voucher = post_claim(client).json()
    tx_hash = evm.send(voucher["tx"], sender=evm.stranger)  # never reported to the portal
    evm.mine()
    evm.watch()
    claim = Claim.objects.get()
    assert (claim.status, claim.tx_hash) == (Claim.Status.CONFIRMED, tx_hash)
    assert balance(client)["claimed_wei"] == 3 * OMNIT


def test_a_later_voucher_covers_an_earlier_one(evm, alice):
    client = signed_in(alice)
    credit(alice, 2 * OMNIT)
    first = post_claim(client).json()
    credit(alice, 3 * OMNIT)
    second = post_claim(client).json()
    assert int(second["cumulative_amount"]) == 5 * OMNIT
    evm.send(second["tx"])
    reverts_with(evm, first["tx"], "NothingToClaim")
    evm.mine()
    evm.watch()
    assert set(Claim.objects.values_list("status", flat=True)) == {Claim.Status.CONFIRMED}
    assert evm.balance(ALICE.address) == 5 * OMNIT
    assert balance(client) == {
        "earned_wei": 5 * OMNIT, "claimed_wei": 5 * OMNIT, "pending_wei": 0, "claimable_wei": 0
    }  # fmt: skip


def test_a_new_payout_wallet_gets_only_what_is_not_pending_elsewhere(evm, alice):
    link_wallet(alice, BOB.address)
    client = signed_in(alice)
    credit(alice, 2 * OMNIT)
    to_alice = post_claim(client).json()
    alice.wallets.get(address=BOB.address).make_payout()
    credit(alice, 3 * OMNIT)
    to_bob = post_claim(client).json()
    assert (to_bob["account"], to_bob["cumulative_amount"]) == (BOB.address, str(3 * OMNIT))
    evm.send(to_alice["tx"])
    evm.send(to_bob["tx"])
    evm.mine()
    evm.watch()
    assert evm.balance(ALICE.address) + evm.balance(BOB.address) == 5 * OMNIT
    assert balance(client)["claimed_wei"] == 5 * OMNIT


def test_the_owner_pauses_and_rotates_the_signer(evm, alice, settings):
    credit(alice, 4 * OMNIT)
    voucher = post_claim(signed_in(alice)).json()
    evm.transact(evm.distributor.functions.pause())
    reverts_with(evm, voucher["tx"], "EnforcedPause")
    evm.transact(evm.distributor.functions.unpause())
    with pytest.raises(REVERTS):
        evm.transact(evm.distributor.functions.pause(), sender=evm.stranger)
    evm.transact(evm.distributor.functions.setSigner(CAROL.address))
    reverts_with(evm, voucher["tx"], "InvalidSignature")
    evm.transact(evm.distributor.functions.setSigner(evm.signer.address))
    evm.send(voucher["tx"])
    assert evm.balance(ALICE.address) == 4 * OMNIT


def test_vouchers_are_the_eip712_the_contract_checks(evm):
    voucher = Voucher(evm.w3.eth.chain_id, evm.distributor.address, ALICE.address, 10, 99)
    assert voucher.signer_of(voucher.sign(evm.signer.key)) == evm.signer.address
    separator = evm.distributor.functions.domainSeparator().call()
    from eth_account.messages import encode_typed_data

    assert encode_typed_data(full_message=voucher.typed_data()).header == separator


def test_a_reorg_deeper_than_the_confirmations_stops_the_watcher(evm, alice):
    evm.mine()
    evm.watch()
    ChainCursor.objects.update(block_hash="0x" + "ab" * 32)
    with pytest.raises(watcher.DeepReorg):
        evm.watch()


def test_events_inside_the_confirmation_depth_are_not_applied(evm, alice, settings):
    settings.CHAIN_CONFIRMATIONS = 5
    credit(alice, OMNIT)
    evm.send(post_claim(signed_in(alice)).json()["tx"])
    evm.mine(4)
    assert evm.watch().events == 0
    evm.mine(1)
    assert evm.watch().events == 1


def test_two_watchers_apply_a_range_once(evm, alice):
    credit(alice, OMNIT)
    evm.send(post_claim(signed_in(alice)).json()["tx"])
    evm.mine()
    evm.watch()
    cursor = ChainCursor.objects.get()
    block = evm.w3.eth.get_block(cursor.block_number)
    with pytest.raises(watcher.CursorMoved):  # a second watcher that read the same range late
        watcher.apply_range(cursor.chain_id, cursor.distributor, -1, block, [])
    assert ClaimEvent.objects.count() == 1


def test_deadline_is_the_portals_clock_plus_the_ttl(evm, alice, settings):
    settings.CLAIM_VOUCHER_TTL_S = 600
    credit(alice, OMNIT)
    before = int(time.time())
    deadline = post_claim(signed_in(alice)).json()["deadline"]
    assert before + 600 <= deadline <= int(time.time()) + 600
