"""Signing in with Ethereum as a wallet and a page would: real keys, EIP-4361 messages, and
the /auth/nonce → /auth/verify round trip with its CSRF token."""

from datetime import UTC, datetime, timedelta

from django.test import Client
from eth_account import Account
from eth_account.messages import encode_defunct

from contributors.siwe import SiweMessage

# Public development keys (the first two are anvil's accounts 0 and 1); never fund them.
ALICE = Account.from_key("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
BOB = Account.from_key("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")
CAROL = Account.from_key("0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdb365a")


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def make_message(account, nonce: str, **overrides) -> str:
    now = datetime.now(UTC)
    fields = {
        "domain": "testserver",
        "address": account.address,
        "statement": "Sign in to the OmniTensor contributor portal.",
        "uri": "http://testserver/",
        "version": "1",
        "chain_id": 31337,
        "nonce": nonce,
        "issued_at": rfc3339(now),
        "expiration_time": rfc3339(now + timedelta(minutes=10)),
    }
    fields.update(overrides)
    return SiweMessage(**{k: v for k, v in fields.items() if v is not None}).to_text()


def sign(account, message: str) -> str:
    signed = Account.sign_message(encode_defunct(text=message), account.key)
    return "0x" + signed.signature.hex().removeprefix("0x")


def get_nonce(client) -> dict:
    response = client.get("/auth/nonce")
    assert response.status_code == 200
    return response.json()


def post_json(client, url, body, **extra):
    """POST JSON as a page does: echoing the csrftoken cookie, if the client holds one."""
    token = client.cookies["csrftoken"].value if "csrftoken" in client.cookies else ""
    return client.post(
        url, body, content_type="application/json", headers={"X-CSRFToken": token}, **extra
    )


def sign_in(client, account=ALICE, **overrides):
    """Sign `client` in with `account` (message fields overridden as given); the answer."""
    nonce = get_nonce(client)["nonce"]
    message = make_message(account, nonce, **overrides)
    return post_json(
        client, "/auth/verify", {"message": message, "signature": sign(account, message)}
    )


def link(client, account):
    """Link `account` to the wallet list of the contributor signed in on `client`; the answer."""
    nonce = get_nonce(client)["nonce"]
    message = make_message(account, nonce)
    return post_json(
        client, "/api/v1/me/wallets", {"message": message, "signature": sign(account, message)}
    )


def signed_in_with_wallet(account) -> Client:
    """A page's client (CSRF checks on) signed in through SIWE with `account`."""
    client = Client(enforce_csrf_checks=True)
    response = sign_in(client, account)
    assert response.status_code == 200, response.content
    return client


def signed_in(contributor) -> Client:
    """A client with `contributor`'s session, as after a sign-in (no message signed)."""
    client = Client()
    client.force_login(contributor)
    return client
