"""Signing in through the real page in headless Chromium, with an injected EIP-1193 wallet.

The wallet is a `window.ethereum` whose `personal_sign` calls back into Python, where
eth_account signs with a test key: the page, the portal and the signature are all real.
"""

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from playwright.sync_api import expect

from contributors.models import Contributor
from tests.support.siwe import ALICE, BOB

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PROVIDER = """
window.ethereum = {
  isOmniTensorTestWallet: true,
  async request({ method, params }) {
    if (method === "eth_requestAccounts" || method === "eth_accounts") {
      return await window.__walletAccounts();
    }
    if (method === "personal_sign") {
      return await window.__walletSign(params[0], params[1]);
    }
    throw Object.assign(new Error(`unsupported method ${method}`), { code: 4200 });
  },
};
"""


def install_wallet(page, accounts):
    keys = {account.address.lower(): account for account in accounts}
    signed = []

    def sign(message_hex: str, address: str) -> str:
        text = bytes.fromhex(message_hex.removeprefix("0x")).decode()
        signed.append(text)
        account = keys[address.lower()]
        return "0x" + Account.sign_message(encode_defunct(text=text), account.key).signature.hex()

    page.expose_function("__walletAccounts", lambda: [a.address.lower() for a in accounts])
    page.expose_function("__walletSign", sign)
    page.add_init_script(PROVIDER)
    return signed


def test_user_signs_in_with_the_browser_wallet(page, live_server):
    signed = install_wallet(page, [ALICE])
    page.goto(f"{live_server.url}/signin/")

    page.get_by_role("button", name="Sign in with wallet").click()
    page.wait_for_url(f"{live_server.url}/dashboard/")
    assert page.get_by_role("heading", name="Dashboard").is_visible()
    page.goto(f"{live_server.url}/wallets/")

    assert page.get_by_role("heading", name="Your wallets").is_visible()
    assert page.locator(f"tr[data-address='{ALICE.address}']").is_visible()
    assert "Sign out" in page.get_by_role("navigation").inner_text()
    assert len(signed) == 1 and "wants you to sign in with your Ethereum account" in signed[0]
    assert Contributor.objects.get().wallets.get().address == ALICE.address
    assert page.console_errors == []


def test_page_says_plainly_when_no_wallet_is_installed(page, live_server):
    page.goto(f"{live_server.url}/signin/")

    page.get_by_role("button", name="Sign in with wallet").click()

    assert page.get_by_text("No browser wallet found.").is_visible()
    assert "No browser wallet was found" in page.locator("#signin-status").inner_text()
    assert page.console_errors == []


def test_fallback_signs_in_with_a_pasted_signature(page, live_server):
    page.goto(f"{live_server.url}/signin/")
    page.get_by_text("Hardware or command-line wallet?").click()
    page.get_by_label("Your wallet address").fill(BOB.address.lower())
    page.get_by_role("button", name="Show the message to sign").click()
    message_box = page.get_by_label("Message (sign exactly this text")
    # Not wait_for_function: its polling evaluates a string, which the page's CSP forbids.
    expect(message_box).not_to_have_value("")
    message = message_box.input_value()

    # What a hardware or command-line wallet does outside the browser.
    signature = Account.sign_message(encode_defunct(text=message), BOB.key).signature.hex()
    page.get_by_label("Signature").fill("0x" + signature.removeprefix("0x"))
    page.locator("#manual-signin").get_by_role("button", name="Sign in").click()

    page.wait_for_url(f"{live_server.url}/dashboard/")
    page.goto(f"{live_server.url}/wallets/")
    assert page.locator(f"tr[data-address='{BOB.address}']").is_visible()
    assert page.console_errors == []


def test_user_links_a_second_wallet_and_makes_it_the_payout(page, live_server):
    install_wallet(page, [ALICE, BOB])
    page.goto(f"{live_server.url}/signin/?next=/wallets/")
    page.get_by_role("button", name="Sign in with wallet").click()
    page.wait_for_url(f"{live_server.url}/wallets/")

    page.get_by_role("button", name="Link another wallet").click()
    bob_row = page.locator(f"tr[data-address='{BOB.address}']")
    bob_row.wait_for()
    bob_row.get_by_role("button", name=f"Make {BOB.address} the payout wallet").click()
    page.locator(f"tr[data-address='{BOB.address}'] .badge").wait_for()

    contributor = Contributor.objects.get()
    assert contributor.payout_wallet.address == BOB.address
    assert contributor.wallets.count() == 2
    assert page.console_errors == []
