"""The /claims/ page in headless Chromium: the Claim button sends the voucher through an injected
EIP-1193 wallet onto py-evm, and once the watcher confirms it the history shows the claim with
its transaction hash, linked to the explorer. Without any browser wallet, "Claim without gas"
has the portal's relayer send it."""

import pytest
from django.core.cache import cache

from contributors.signin import contributor_for_sign_in
from rewards.models import Claim
from tests.support.browser import sign_in
from tests.support.claims import credit, start_evm
from tests.support.rewards import OMNIT
from tests.support.siwe import ALICE

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PROVIDER = """
window.ethereum = {
  async request({ method, params }) {
    if (method === "eth_requestAccounts" || method === "eth_accounts") return [window.__account];
    if (method === "eth_chainId") return await window.__walletChainId();
    if (method === "eth_sendTransaction") return await window.__walletSend(params[0]);
    throw Object.assign(new Error(`unsupported method ${method}`), { code: 4200 });
  },
};
"""


@pytest.fixture
def evm(settings, monkeypatch):
    cache.clear()
    return start_evm(settings, monkeypatch)


def test_claim_button_pays_and_history_shows_the_confirmed_tx(page, live_server, evm):
    alice = contributor_for_sign_in(ALICE.address)
    credit(alice, 42 * OMNIT)
    sent = []

    def send(tx):
        sent.append(evm.send({"to": tx["to"], "data": tx["data"]}))
        return sent[-1]

    page.expose_function("__walletSend", send)
    page.expose_function("__walletChainId", lambda: hex(evm.w3.eth.chain_id))
    page.add_init_script(f"window.__account = {ALICE.address.lower()!r};" + PROVIDER)
    sign_in(page.context, live_server, alice)

    page.goto(f"{live_server.url}/claims/")
    assert "42" in page.locator("#claimable").inner_text()
    page.get_by_role("button", name="Claim", exact=True).click()
    page.locator("tr[data-status='submitted']").wait_for()
    assert evm.balance(ALICE.address) == 42 * OMNIT

    evm.mine()
    evm.watch()
    page.reload()
    row = page.locator("tr[data-status='confirmed']")
    row.wait_for()
    tx_hash = Claim.objects.get().tx_hash
    assert sent == [tx_hash]
    link = row.get_by_role("link", name=tx_hash)
    assert link.get_attribute("href") == f"https://explorer.example/tx/{tx_hash}"
    assert "42" in page.locator("#claimed").inner_text()
    assert page.get_by_role("button", name="Claim", exact=True).is_disabled()
    assert page.console_errors == []


def test_claim_without_gas_needs_no_wallet(page, live_server, evm):
    alice = contributor_for_sign_in(ALICE.address)
    credit(alice, 8 * OMNIT)
    sign_in(page.context, live_server, alice)  # no window.ethereum on this page

    page.goto(f"{live_server.url}/claims/")
    page.get_by_role("button", name="Claim without gas (the portal sends it)").click()
    row = page.locator("tr[data-status='submitted']")
    row.wait_for()
    assert "sent by the portal" in row.inner_text()
    claim = Claim.objects.get()
    assert claim.relayed_at is not None
    assert evm.balance(ALICE.address) == 8 * OMNIT
    assert evm.eth(ALICE.address) == 0

    evm.mine()
    evm.watch()
    page.reload()
    page.locator("tr[data-status='confirmed']").wait_for()
    assert "8" in page.locator("#claimed").inner_text()
    assert page.console_errors == []
