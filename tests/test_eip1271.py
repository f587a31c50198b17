"""Smart-contract wallets (EIP-1271) signing in and being linked, on a real EVM (py-evm).

`TestContractWallet` (contracts/) accepts a signature when its owner EOA signed the hash. The
portal asks it `isValidSignature(EIP-191 hash of the message, signature)` only when the
signature does not recover to the message's address and a chain is configured.
"""

from types import SimpleNamespace

import pytest
from django.test import Client
from eth_account.messages import defunct_hash_message
from eth_tester import EthereumTester, PyEVMBackend
from web3 import EthereumTesterProvider, Web3
from web3.providers import BaseProvider

from contributors import eip1271
from contributors.models import Contributor, SignInNonce, Wallet
from contributors.siwe import SiweError, verify
from rewards import chain
from tests.support.siwe import ALICE, BOB, CAROL, get_nonce, make_message, post_json, sign, sign_in

pytestmark = pytest.mark.django_db


class Chain:
    """eth-tester with a contract wallet owned by ALICE and, as a non-wallet contract, a token."""

    def __init__(self):
        self.provider = EthereumTesterProvider(EthereumTester(PyEVMBackend()))
        self.w3 = Web3(self.provider)
        self.deployer = self.w3.eth.accounts[0]
        self.wallet = self.deploy("TestContractWallet", ALICE.address)
        self.token = self.deploy("TestToken", "OmniTensor", "OMNIT", 10**18)

    def deploy(self, name: str, *args):
        factory = self.w3.eth.contract(abi=chain.abi(name), bytecode=chain.bytecode(name))
        tx_hash = factory.constructor(*args).transact({"from": self.deployer})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        return self.w3.eth.contract(address=receipt.contractAddress, abi=chain.abi(name))


@pytest.fixture(scope="module")
def evm():
    return Chain()


@pytest.fixture
def on_chain(evm, settings, monkeypatch):
    """The portal's chain is the eth-tester one (as tests/support/claims.start_evm does)."""
    settings.WEB3_PROVIDER_URI = "eth-tester://in-process"
    monkeypatch.setattr(chain, "provider_factory", lambda: evm.provider)
    return evm


@pytest.fixture
def browser():
    return Client(enforce_csrf_checks=True)


def signed_for(client, address: str, signer, url: str, signature: str | None = None):
    """POST a message naming `address`, signed by `signer` (an EOA), to `url`."""
    message = make_message(SimpleNamespace(address=address), get_nonce(client)["nonce"])
    body = {"message": message, "signature": signature or sign(signer, message)}
    return post_json(client, url, body)


def test_the_wallet_contract_answers_eip1271(evm):
    digest = defunct_hash_message(text="hello")
    by_owner = bytes.fromhex(sign(ALICE, "hello")[2:])
    by_other = bytes.fromhex(sign(BOB, "hello")[2:])

    assert evm.wallet.functions.owner().call() == ALICE.address
    assert evm.wallet.functions.isValidSignature(digest, by_owner).call() == eip1271.MAGIC_VALUE
    assert evm.wallet.functions.isValidSignature(digest, by_other).call() == b"\xff" * 4
    assert evm.wallet.functions.isValidSignature(digest, b"\x01\x02").call() == b"\xff" * 4


def test_a_contract_wallet_signs_in_with_its_owners_signature(on_chain, browser):
    address = on_chain.wallet.address

    response = signed_for(browser, address, ALICE, "/auth/verify")

    assert response.status_code == 200, response.content
    assert response.json()["address"] == address
    contributor = Contributor.objects.get(username=address)
    assert [(w.address, w.is_payout) for w in contributor.wallets.all()] == [(address, True)]
    assert browser.get("/api/v1/me").json()["wallets"][0]["address"] == address
    assert SignInNonce.objects.get().consumed_at is not None


def test_a_signature_by_another_key_is_refused(on_chain, browser):
    response = signed_for(browser, on_chain.wallet.address, BOB, "/auth/verify")

    assert response.status_code == 401
    assert response.json()["error"] == "bad_signature"
    assert "did not accept" in response.json()["detail"]
    assert not Contributor.objects.exists()
    assert SignInNonce.objects.get().consumed_at is None  # the owner may still use it


def test_a_contract_wallet_signature_of_another_length_reaches_the_wallet(on_chain, browser):
    # Only the contract path accepts lengths other than 65 bytes; this wallet refuses them.
    response = signed_for(browser, on_chain.wallet.address, None, "/auth/verify", "0x" + "ab" * 97)

    assert response.status_code == 401
    assert "did not accept" in response.json()["detail"]


def test_a_contract_that_is_no_wallet_is_refused_not_a_500(on_chain, browser):
    # The token has no isValidSignature and no fallback: the call reverts.
    response = signed_for(browser, on_chain.token.address, ALICE, "/auth/verify")

    assert response.status_code == 401
    assert response.json()["error"] == "bad_signature"
    assert "did not accept" in response.json()["detail"]


def test_an_eoa_with_a_chain_configured_is_refused_as_before(on_chain, browser):
    response = signed_for(browser, BOB.address, ALICE, "/auth/verify")

    assert response.status_code == 401
    assert response.json()["detail"] == f"signed by {ALICE.address}, not {BOB.address}"


def test_without_a_chain_a_contract_wallet_is_refused_as_before(evm, settings, browser):
    settings.WEB3_PROVIDER_URI = ""
    address = evm.wallet.address

    response = signed_for(browser, address, ALICE, "/auth/verify")

    assert response.status_code == 401
    assert response.json()["error"] == "bad_signature"
    assert response.json()["detail"] == f"signed by {ALICE.address}, not {address}"
    assert not Contributor.objects.exists()


class Unreachable(BaseProvider):
    def make_request(self, method, params):
        raise ConnectionError("connection refused: https://rpc.example/v3/SECRET-KEY")

    def is_connected(self, show_traceback: bool = False) -> bool:
        return False


def test_a_node_that_cannot_be_asked_gives_bad_signature_not_a_500(evm, settings, monkeypatch):
    settings.WEB3_PROVIDER_URI = "https://rpc.example/v3/SECRET-KEY"
    monkeypatch.setattr(chain, "provider_factory", Unreachable)
    browser = Client(enforce_csrf_checks=True)

    response = signed_for(browser, evm.wallet.address, ALICE, "/auth/verify")

    assert response.status_code == 401
    body = response.json()
    assert body["error"] == "bad_signature"
    assert "could not be asked" in body["detail"]
    assert "SECRET" not in body["detail"]
    assert SignInNonce.objects.get().consumed_at is None


def test_an_eoa_signature_never_asks_the_chain(settings, monkeypatch, browser):
    settings.WEB3_PROVIDER_URI = "https://rpc.example/"
    monkeypatch.setattr(chain, "provider_factory", Unreachable)

    assert sign_in(browser, ALICE).status_code == 200


def test_linking_a_contract_wallet(on_chain, browser):
    assert sign_in(browser, CAROL).status_code == 200
    address = on_chain.wallet.address

    response = signed_for(browser, address, ALICE, "/api/v1/me/wallets")

    assert response.status_code == 201, response.content
    assert response.json()["address"] == address
    assert Wallet.objects.get(address=address).contributor.username == CAROL.address

    refused = signed_for(Client(), address, BOB, "/auth/verify")
    assert refused.status_code == 401


def test_linking_a_contract_wallet_with_another_keys_signature_is_refused(on_chain, browser):
    sign_in(browser, CAROL)

    response = signed_for(browser, on_chain.wallet.address, BOB, "/api/v1/me/wallets")

    assert response.status_code == 401
    assert response.json()["error"] == "bad_signature"
    assert not Wallet.objects.filter(address=on_chain.wallet.address).exists()


def test_verify_without_the_hook_keeps_the_65_byte_rule(evm):
    message = make_message(SimpleNamespace(address=evm.wallet.address), "abcdefgh1234")
    asked = []

    def hook(address, digest, signature):
        asked.append((address, digest, signature))
        return True

    with pytest.raises(SiweError, match="65-byte"):
        verify(message, "0x" + "ab" * 97)
    assert verify(message, "0x" + "ab" * 97, contract_wallet=hook).address == evm.wallet.address
    assert asked == [(evm.wallet.address, defunct_hash_message(text=message), b"\xab" * 97)]
    with pytest.raises(SiweError, match="65-byte"):
        verify(message, "0xabc", contract_wallet=hook)  # odd hex never reaches a wallet
