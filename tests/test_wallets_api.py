"""Linking, choosing the payout wallet and unlinking, through /api/v1/me/wallets."""

import pytest
from django.test import Client

from contributors.models import Wallet
from tests.support.siwe import (
    ALICE,
    BOB,
    CAROL,
    get_nonce,
    link,
    make_message,
    post_json,
    sign,
    sign_in,
    signed_in_with_wallet,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice():
    """A page signed in with ALICE's wallet."""
    return signed_in_with_wallet(ALICE)


def delete(client, path):
    return client.delete(path, headers={"X-CSRFToken": client.cookies["csrftoken"].value})


def addresses(client):
    return [(w["address"], w["is_payout"]) for w in client.get("/api/v1/me").json()["wallets"]]


def test_link_a_second_wallet(alice):
    response = link(alice, BOB)

    assert response.status_code == 201
    assert response.json()["address"] == BOB.address
    assert addresses(alice) == [(ALICE.address, True), (BOB.address, False)]


def test_linking_the_same_wallet_again_changes_nothing(alice):
    link(alice, BOB)
    response = link(alice, BOB)

    assert response.status_code == 200
    assert Wallet.objects.count() == 2


def test_linking_someone_elses_wallet_is_refused(alice):
    bob = Client(enforce_csrf_checks=True)
    sign_in(bob, BOB)

    response = link(alice, BOB)

    assert response.status_code == 409
    assert response.json()["error"] == "wallet_taken"
    assert Wallet.objects.get(address=BOB.address).contributor.username == BOB.address


def test_link_needs_the_new_wallets_own_signature(alice):
    nonce = get_nonce(alice)["nonce"]
    message = make_message(BOB, nonce)
    response = post_json(
        alice, "/api/v1/me/wallets", {"message": message, "signature": sign(CAROL, message)}
    )

    assert response.status_code == 401
    assert response.json()["error"] == "bad_signature"


def test_linked_wallet_can_sign_in_to_the_same_account(alice):
    link(alice, BOB)
    bob_device = Client(enforce_csrf_checks=True)
    sign_in(bob_device, BOB)

    assert bob_device.get("/api/v1/me").json()["id"] == alice.get("/api/v1/me").json()["id"]


def test_choose_the_payout_wallet(alice):
    link(alice, BOB)
    response = post_json(alice, f"/api/v1/me/wallets/{BOB.address}/payout", {})

    assert response.status_code == 200
    assert addresses(alice) == [(ALICE.address, False), (BOB.address, True)]


def test_payout_accepts_any_letter_case(alice):
    link(alice, BOB)
    assert (
        post_json(alice, f"/api/v1/me/wallets/{BOB.address.lower()}/payout", {}).status_code == 200
    )


def test_unlink_a_wallet_moves_payout_to_a_remaining_one(alice):
    link(alice, BOB)
    response = delete(alice, f"/api/v1/me/wallets/{ALICE.address}")

    assert response.status_code == 204
    assert addresses(alice) == [(BOB.address, True)]


def test_the_last_wallet_cannot_be_unlinked(alice):
    response = delete(alice, f"/api/v1/me/wallets/{ALICE.address}")

    assert response.status_code == 409
    assert response.json()["error"] == "last_wallet"


def test_wallets_of_others_are_not_found(alice):
    bob = Client(enforce_csrf_checks=True)
    sign_in(bob, BOB)

    assert delete(alice, f"/api/v1/me/wallets/{BOB.address}").status_code == 404
    assert post_json(alice, f"/api/v1/me/wallets/{BOB.address}/payout", {}).status_code == 404
    assert delete(alice, "/api/v1/me/wallets/not-an-address").status_code == 400


def test_wallet_changes_need_the_csrf_token(alice):
    link(alice, BOB)
    response = alice.post(
        f"/api/v1/me/wallets/{BOB.address}/payout", {}, content_type="application/json"
    )
    assert response.status_code == 403


def test_wallet_endpoints_need_sign_in():
    anonymous = Client()
    assert anonymous.post(
        "/api/v1/me/wallets", {}, content_type="application/json"
    ).status_code in (401, 403)
    assert anonymous.delete(f"/api/v1/me/wallets/{ALICE.address}").status_code in (401, 403)


def test_wallets_page_lists_wallets_for_the_signed_in_contributor(alice):
    link(alice, BOB)
    html = alice.get("/wallets/").content.decode()

    assert ALICE.address in html and BOB.address in html
    assert Client().get("/wallets/").status_code == 302
