"""Sign-in with Ethereum over HTTP: /auth/nonce, /auth/verify, /auth/logout, /api/v1/me."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from contributors.models import Contributor, SignInNonce, Wallet
from tests.support.siwe import (
    ALICE,
    BOB,
    get_nonce,
    make_message,
    post_json,
    rfc3339,
    sign,
    sign_in,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser():
    """A client that behaves like a page: it holds the csrftoken cookie and echoes it."""
    return Client(enforce_csrf_checks=True)


def test_nonce_gives_everything_needed_to_build_the_message(browser):
    response = browser.get("/auth/nonce")
    body = response.json()

    assert body["domain"] == "testserver"
    assert body["uri"] == "http://testserver/"
    assert body["chain_id"] == 31337
    assert body["statement"]
    assert len(body["nonce"]) >= 8 and body["nonce"].isalnum()
    assert "csrftoken" in response.cookies
    assert response["Cache-Control"] == "no-store"


def test_nonce_with_address_returns_the_exact_message_to_sign(browser):
    body = browser.get("/auth/nonce", {"address": ALICE.address.lower()}).json()

    message = body["message"]
    assert message.startswith("testserver wants you to sign in with your Ethereum account:\n")
    assert f"\n{ALICE.address}\n" in message  # checksummed for the client
    assert f"Nonce: {body['nonce']}" in message
    response = post_json(
        browser, "/auth/verify", {"message": message, "signature": sign(ALICE, message)}
    )
    assert response.status_code == 200


def test_nonce_with_a_bad_address_is_refused(browser):
    response = browser.get("/auth/nonce", {"address": "0x123"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_address"


def test_first_sign_in_creates_contributor_with_payout_wallet(browser):
    response = sign_in(browser)

    assert response.status_code == 200
    assert response.json()["address"] == ALICE.address
    contributor = Contributor.objects.get()
    wallet = contributor.wallets.get()
    assert (wallet.address, wallet.is_payout) == (ALICE.address, True)
    assert not contributor.has_usable_password()

    me = browser.get("/api/v1/me").json()
    assert me == {
        "id": contributor.pk,
        "wallets": [
            {
                "address": ALICE.address,
                "is_payout": True,
                "linked_at": me["wallets"][0]["linked_at"],
            }
        ],
    }


def test_second_sign_in_reuses_the_contributor(browser):
    sign_in(browser)
    assert sign_in(Client(enforce_csrf_checks=True)).status_code == 200
    assert Contributor.objects.count() == 1


def test_sign_in_rotates_the_session_key(browser):
    browser.get("/auth/nonce")
    browser.session.save()
    before = browser.cookies.get("sessionid")
    sign_in(browser)
    after = browser.cookies["sessionid"].value
    assert before is None or before.value != after


def test_replayed_message_is_refused(browser):
    nonce = get_nonce(browser)["nonce"]
    message = make_message(ALICE, nonce)
    body = {"message": message, "signature": sign(ALICE, message)}
    assert post_json(browser, "/auth/verify", body).status_code == 200

    other = Client(enforce_csrf_checks=True)
    other.get("/auth/nonce")
    replay = post_json(other, "/auth/verify", body)
    assert replay.status_code == 409
    assert replay.json()["error"] == "nonce_reused"


def test_two_verifies_racing_spend_the_nonce_once(browser, transactional_db):
    nonce = get_nonce(browser)["nonce"]
    message = make_message(ALICE, nonce)
    body = {"message": message, "signature": sign(ALICE, message)}
    clients = [Client(enforce_csrf_checks=True) for _ in range(4)]
    for client in clients:
        client.get("/auth/nonce")
    statuses = []
    barrier = threading.Barrier(len(clients))

    def attempt(client):
        barrier.wait()
        statuses.append(post_json(client, "/auth/verify", body).status_code)

    threads = [threading.Thread(target=attempt, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200, 409, 409, 409]


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"domain": "evil.example"}, "domain_mismatch"),
        ({"uri": "https://evil.example/"}, "uri_mismatch"),
        ({"chain_id": 1}, "chain_mismatch"),
        (
            {
                "issued_at": rfc3339(datetime.now(UTC) - timedelta(hours=2)),
                "expiration_time": rfc3339(datetime.now(UTC) - timedelta(hours=1)),
            },
            "expired",
        ),
        ({"not_before": rfc3339(datetime.now(UTC) + timedelta(hours=1))}, "not_yet_valid"),
        ({"issued_at": rfc3339(datetime.now(UTC) + timedelta(minutes=10))}, "not_yet_valid"),
    ],
)
def test_message_for_another_site_chain_or_time_is_refused(browser, overrides, code):
    response = sign_in(browser, **overrides)

    assert response.status_code == 400
    assert response.json()["error"] == code
    assert response.json()["detail"]
    assert Contributor.objects.count() == 0


def test_signature_by_another_key_is_refused(browser):
    nonce = get_nonce(browser)["nonce"]
    message = make_message(ALICE, nonce)
    response = post_json(
        browser, "/auth/verify", {"message": message, "signature": sign(BOB, message)}
    )

    assert response.status_code == 401
    assert response.json()["error"] == "bad_signature"
    # A failed attempt does not burn the nonce its owner is about to use.
    assert SignInNonce.objects.get(nonce=nonce).consumed_at is None


def test_nonce_not_issued_by_us_is_refused(browser):
    browser.get("/auth/nonce")
    message = make_message(ALICE, "madeUpNonce123")
    response = post_json(
        browser, "/auth/verify", {"message": message, "signature": sign(ALICE, message)}
    )

    assert response.status_code == 400
    assert response.json()["error"] == "unknown_nonce"


def test_nonce_older_than_ten_minutes_is_refused(browser):
    nonce = get_nonce(browser)["nonce"]
    SignInNonce.objects.filter(nonce=nonce).update(issued_at=timezone.now() - timedelta(minutes=11))
    message = make_message(ALICE, nonce)
    response = post_json(
        browser, "/auth/verify", {"message": message, "signature": sign(ALICE, message)}
    )

    assert response.status_code == 400
    assert response.json()["error"] == "expired"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ("not json", 400, "invalid_json"),
        ("[1, 2]", 400, "invalid_json"),
        ("{}", 400, "validation_failed"),
        ('{"message": "x"}', 400, "validation_failed"),
        ('{"message": 5, "signature": "0x00"}', 400, "validation_failed"),
        ('{"message": "hello", "signature": "0x00"}', 400, "malformed_message"),
        ('{"message": "' + "a" * 17000 + '", "signature": "0x"}', 413, "body_too_large"),
    ],
)
def test_bad_bodies_get_a_4xx_with_a_code(browser, body, status, code):
    browser.get("/auth/nonce")
    response = post_json(browser, "/auth/verify", body)

    assert response.status_code == status
    assert response.json()["error"] == code
    assert response.json()["detail"]


def test_missing_fields_are_named(browser):
    browser.get("/auth/nonce")
    response = post_json(browser, "/auth/verify", {"message": "x"})
    assert response.json()["errors"] == [{"field": "signature", "error": "required"}]


def test_verify_without_csrf_token_is_refused(browser):
    nonce = get_nonce(browser)["nonce"]
    message = make_message(ALICE, nonce)
    response = browser.post(
        "/auth/verify",
        {"message": message, "signature": sign(ALICE, message)},
        content_type="application/json",
    )
    assert response.status_code == 403
    assert response.json()["error"] == "csrf_failed"


def test_verify_attempts_are_rate_limited_per_ip(browser, settings):
    settings.SIWE_VERIFY_RATE_PER_MIN = 3
    browser.get("/auth/nonce")
    for _ in range(3):
        assert post_json(browser, "/auth/verify", "{}").status_code == 400
    response = post_json(browser, "/auth/verify", "{}")

    assert response.status_code == 429
    assert response.json()["error"] == "throttled"
    assert 1 <= int(response["Retry-After"]) <= 61
    # Another address is not affected.
    assert post_json(browser, "/auth/verify", "{}", REMOTE_ADDR="10.9.8.7").status_code == 400


def test_forwarded_for_counts_only_behind_a_trusted_proxy(browser, settings):
    import ipaddress

    settings.SIWE_VERIFY_RATE_PER_MIN = 1
    browser.get("/auth/nonce")
    spoofed = {"HTTP_X_FORWARDED_FOR": "203.0.113.1"}
    assert post_json(browser, "/auth/verify", "{}", **spoofed).status_code == 400
    # Untrusted peer: X-Forwarded-For is ignored, so a new value does not reset the limit.
    spoofed2 = {"HTTP_X_FORWARDED_FOR": "203.0.113.2"}
    assert post_json(browser, "/auth/verify", "{}", **spoofed2).status_code == 429

    settings.TRUSTED_PROXY_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    assert post_json(browser, "/auth/verify", "{}", **spoofed2).status_code == 400


def test_me_requires_sign_in(client):
    response = client.get("/api/v1/me")
    assert response.status_code in (401, 403)
    assert response.json()["error"] == "not_authenticated"


def test_logout_ends_the_session(browser):
    sign_in(browser)
    assert browser.get("/api/v1/me").status_code == 200

    assert post_json(browser, "/auth/logout", {}).status_code == 200
    assert browser.get("/api/v1/me").status_code in (401, 403)


def test_disabled_contributor_cannot_sign_in(browser):
    sign_in(browser)
    Contributor.objects.update(is_active=False)
    response = sign_in(Client(enforce_csrf_checks=True))
    assert response.status_code == 403
    assert response.json()["error"] == "account_disabled"
    assert Wallet.objects.count() == 1


def test_old_nonces_are_pruned_and_fresh_ones_kept(browser):
    from contributors.tasks import prune_signin_nonces

    old = get_nonce(browser)["nonce"]
    fresh = get_nonce(browser)["nonce"]
    SignInNonce.objects.filter(nonce=old).update(issued_at=timezone.now() - timedelta(hours=1))

    assert prune_signin_nonces() == 1
    assert list(SignInNonce.objects.values_list("nonce", flat=True)) == [fresh]


@pytest.mark.parametrize("path", ["/auth/logout", "/auth/verify", "/api/v1/me/wallets"])
def test_a_broken_form_body_is_a_json_400_not_a_crash(browser, path):
    sign_in(browser)
    response = browser.post(
        path,
        b"--x\r\nnot a form",
        content_type="multipart/form-data",  # no boundary
        headers={"X-CSRFToken": browser.cookies["csrftoken"].value},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_a_forged_first_forwarded_hop_does_not_buy_a_fresh_rate_limit(browser, settings):
    """Proxies append the peer they saw; the client's own X-Forwarded-For text comes first."""
    import ipaddress

    settings.SIWE_VERIFY_RATE_PER_MIN = 1
    settings.TRUSTED_PROXY_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    browser.get("/auth/nonce")
    first = {"HTTP_X_FORWARDED_FOR": "198.51.100.1, 203.0.113.9"}
    forged = {"HTTP_X_FORWARDED_FOR": "198.51.100.2, 203.0.113.9"}
    assert post_json(browser, "/auth/verify", "{}", **first).status_code == 400
    # Same real client (the hop our proxy appended), another forged prefix: still limited.
    assert post_json(browser, "/auth/verify", "{}", **forged).status_code == 429
