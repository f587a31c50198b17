"""The claims API without a chain node: configuration, vouchers, CSRF, refusals and races.

Issuing a voucher needs only CHAIN_ID, DISTRIBUTOR_ADDRESS and the signer key; the signature is
checked here by recovering it, and on a real EVM in tests/test_claims_chain.py.
"""

import threading

import pytest
from django.db import connection
from django.test import Client
from eth_account import Account
from web3 import Web3

from contributors.models import Wallet
from contributors.signin import contributor_for_sign_in
from rewards import chain
from rewards.models import Claim
from rewards.vouchers import Voucher
from tests.support.claims import balance, credit, post_claim, report_tx
from tests.support.rewards import OMNIT
from tests.support.siwe import ALICE, BOB, signed_in

pytestmark = pytest.mark.django_db

SIGNER = Account.from_key("0x" + "42" * 32)
DISTRIBUTOR = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@pytest.fixture
def configured(settings):
    settings.CHAIN_ID = 31337
    settings.DISTRIBUTOR_ADDRESS = DISTRIBUTOR.lower()
    settings.CLAIM_SIGNER_KEY = "0x" + "42" * 32
    settings.OMNIT_TOKEN_ADDRESS = ""


def test_config_is_public(configured):
    response = Client().get("/api/v1/claims/config")
    assert response.status_code == 200
    assert response.json() == {
        "chain_id": 31337, "distributor": DISTRIBUTOR, "token": None, "signer": SIGNER.address
    }  # fmt: skip


@pytest.mark.parametrize("missing", ["DISTRIBUTOR_ADDRESS", "CLAIM_SIGNER_KEY"])
def test_without_distributor_or_key_claims_are_unavailable(configured, settings, alice, missing):
    setattr(settings, missing, "")
    credit(alice, OMNIT)
    assert Client().get("/api/v1/claims/config").status_code == 503
    response = post_claim(signed_in(alice))
    assert response.status_code == 503
    assert response.json()["error"] == "chain_not_configured"
    assert missing in response.json()["detail"]
    assert not Claim.objects.exists()


def test_signer_key_can_come_from_a_file(tmp_path, monkeypatch):
    from portal.settings import env_secret

    key_file = tmp_path / "signer.key"
    key_file.write_text("0x" + "42" * 32 + "\n")
    monkeypatch.setenv("CLAIM_SIGNER_KEY_FILE", str(key_file))
    assert env_secret("CLAIM_SIGNER_KEY") == "0x" + "42" * 32


def test_a_voucher_is_signed_for_the_payout_wallet_with_its_call_encoded(configured, alice):
    credit(alice, 12 * OMNIT)
    response = post_claim(signed_in(alice))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["account"] == ALICE.address
    assert body["cumulative_amount"] == str(12 * OMNIT)
    assert (body["distributor"], body["chain_id"]) == (DISTRIBUTOR, 31337)
    voucher = Voucher(31337, DISTRIBUTOR, ALICE.address, 12 * OMNIT, body["deadline"])
    assert voucher.signer_of(body["signature"]) == SIGNER.address
    assert body["tx"]["to"] == DISTRIBUTOR
    function, args = Web3().eth.contract(abi=chain.abi()).decode_function_input(body["tx"]["data"])
    assert function.fn_name == "claim"
    assert args["account"] == ALICE.address
    assert args["cumulativeAmount"] == 12 * OMNIT
    assert args["deadline"] == body["deadline"]
    assert "0x" + args["signature"].hex() == body["signature"]


def test_amounts_beyond_2_to_the_63_are_exact(configured, alice):
    huge = 2**70 + 1
    credit(alice, huge)
    body = post_claim(signed_in(alice)).json()
    assert body["cumulative_amount"] == str(huge)
    assert Claim.objects.get().cumulative_wei == huge


def test_claiming_needs_csrf(configured, alice):
    credit(alice, OMNIT)
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = post_claim(client)
    assert response.status_code == 403
    assert not Claim.objects.exists()


def test_claiming_needs_a_session(configured):
    assert post_claim(Client()).status_code == 403


def test_nothing_to_claim_is_409(configured, alice):
    response = post_claim(signed_in(alice))
    assert response.status_code == 409
    assert response.json()["error"] == "nothing_to_claim"


def test_a_second_voucher_carries_only_what_was_earned_since(configured, alice):
    client = signed_in(alice)
    credit(alice, 2 * OMNIT)
    assert post_claim(client).json()["cumulative_amount"] == str(2 * OMNIT)
    assert post_claim(client).json()["error"] == "nothing_to_claim"
    credit(alice, 3 * OMNIT)
    assert post_claim(client).json()["cumulative_amount"] == str(5 * OMNIT)
    assert balance(client) == {
        "earned_wei": 5 * OMNIT, "claimed_wei": 0, "pending_wei": 5 * OMNIT, "claimable_wei": 0
    }  # fmt: skip


def test_a_wallet_with_another_contributors_claims_is_refused(configured, alice):
    credit(alice, OMNIT)
    post_claim(signed_in(alice))
    Wallet.objects.filter(address=ALICE.address).delete()
    bob = contributor_for_sign_in(BOB.address)
    Wallet.objects.create(contributor=bob, address=ALICE.address)
    bob.wallets.get(address=ALICE.address).make_payout()
    credit(bob, OMNIT)
    response = post_claim(signed_in(bob))
    assert response.status_code == 409
    assert response.json()["error"] == "wallet_claimed_by_another_account"


def test_reporting_the_transaction_marks_the_claim_submitted(configured, alice):
    credit(alice, OMNIT)
    client = signed_in(alice)
    claim_id = post_claim(client).json()["claim_id"]
    tx = "0x" + "AB" * 32
    response = report_tx(client, claim_id, tx)
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["tx_hash"]) == ("submitted", tx.lower())
    assert report_tx(client, claim_id, tx).status_code == 200  # reporting twice is fine
    assert report_tx(client, claim_id, "0x1234").json()["error"] == "validation_failed"
    bob = contributor_for_sign_in(BOB.address)
    assert report_tx(signed_in(bob), claim_id, tx).json()["error"] == "claim_not_found"
    assert client.get("/api/v1/me/claims").json()["claims"][0]["status"] == "submitted"


@pytest.mark.django_db(transaction=True)
def test_racing_claims_never_voucher_more_than_was_earned(configured):
    alice = contributor_for_sign_in(ALICE.address)
    credit(alice, 9 * OMNIT)
    barrier = threading.Barrier(4)
    answers = []

    def claim():
        try:
            barrier.wait()
            answers.append(post_claim(signed_in(alice)).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [201, 409, 409, 409]
    claims = list(Claim.objects.all())
    assert [c.cumulative_wei for c in claims] == [9 * OMNIT]
    assert balance(signed_in(alice))["pending_wei"] == 9 * OMNIT
