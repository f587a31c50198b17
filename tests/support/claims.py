"""A real EVM for claim tests: py-evm through eth-tester, with the committed contracts deployed.

`evm` (a fixture) deploys the test ERC-20 and the RewardDistributor, funds the distributor,
gives the portal's claim relayer (a key of its own, `relay_key`) some ETH, points the portal's
settings at them and hands the watcher and the relayer the same chain through
`rewards.chain.provider_factory`. `credit` adds ledger entries for tests that need earnings
without running a settlement.
"""

import ast
from datetime import UTC, datetime, timedelta
from itertools import count

from django.test import Client
from eth_account import Account
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.exceptions import TransactionFailed
from web3 import EthereumTesterProvider, Web3
from web3.exceptions import ContractCustomError, ContractLogicError

from contributors.models import GPU, Node
from rewards import chain, watcher
from rewards.models import Epoch, RewardEntry
from tests.support.rewards import OMNIT

SUPPLY = 10**9 * OMNIT
CONFIRMATIONS = 2
RELAYER_ETH = 10**18

REVERTS = (ContractLogicError, ContractCustomError, TransactionFailed)


def revert_data(exc: Exception) -> bytes:
    """The revert data of a failed call or transaction, however the library reported it."""
    data = getattr(exc, "data", None)
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    message = str(exc.args[0]) if exc.args else ""
    _, _, rest = message.partition("execution reverted: ")
    if rest.startswith(("b'", 'b"')):
        return ast.literal_eval(rest)
    return rest.encode()


def error_selector(name: str) -> str:
    """The 4-byte selector of a custom error of the distributor, e.g. NothingToClaim."""
    for item in chain.abi():
        if item["type"] == "error" and item["name"] == name:
            signature = f"{name}({','.join(i['type'] for i in item['inputs'])})"
            return "0x" + Web3.keccak(text=signature)[:4].hex().removeprefix("0x")
    raise KeyError(name)


class Evm:
    def __init__(self):
        self.tester = EthereumTester(PyEVMBackend())
        self.provider = EthereumTesterProvider(self.tester)
        self.w3 = Web3(self.provider)
        self.owner, self.relayer, self.stranger = self.w3.eth.accounts[:3]
        self.signer = Account.create()
        self.token = self.deploy("TestToken", "OmniTensor", "OMNIT", SUPPLY)
        self.distributor = self.deploy(
            "RewardDistributor", self.token.address, self.signer.address, self.owner
        )
        self.transact(self.token.functions.transfer(self.distributor.address, SUPPLY // 2))
        # The portal's relayer: a key the portal signs with, funded like any account.
        self.relay_key = Account.create()
        self.fund(self.relay_key.address, RELAYER_ETH)

    def fund(self, address: str, wei: int) -> None:
        tx_hash = self.w3.eth.send_transaction({"from": self.owner, "to": address, "value": wei})
        self.w3.eth.wait_for_transaction_receipt(tx_hash)

    def eth(self, address: str) -> int:
        return self.w3.eth.get_balance(address)

    def deploy(self, name: str, *args):
        factory = self.w3.eth.contract(abi=chain.abi(name), bytecode=chain.bytecode(name))
        tx_hash = factory.constructor(*args).transact({"from": self.owner})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        return self.w3.eth.contract(address=receipt.contractAddress, abi=chain.abi(name))

    def transact(self, call, sender=None):
        tx_hash = call.transact({"from": sender or self.owner})
        return self.w3.eth.wait_for_transaction_receipt(tx_hash)

    def send(self, tx: dict, sender=None) -> str:
        """Send a {"to", "data"} transaction as a wallet would; its hash, 0x-hex."""
        tx_hash = self.w3.eth.send_transaction(
            {"from": sender or self.relayer, "to": tx["to"], "data": tx["data"]}
        )
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt.status == 1
        return "0x" + tx_hash.hex().removeprefix("0x")

    def mine(self, blocks: int = CONFIRMATIONS) -> None:
        self.tester.mine_blocks(blocks)

    def now(self) -> int:
        return self.w3.eth.get_block("latest")["timestamp"]

    def travel_to(self, timestamp: int) -> None:
        """The next block is mined at `timestamp` (never backwards)."""
        if timestamp > self.now():
            self.tester.time_travel(timestamp)

    def balance(self, account: str) -> int:
        return self.token.functions.balanceOf(account).call()

    def claimed(self, account: str) -> int:
        return self.distributor.functions.claimed(account).call()

    def watch(self):
        return watcher.watch(self.w3)


def start_evm(settings, monkeypatch) -> Evm:
    """A fresh chain, with the portal's settings and watcher pointed at it (use in a fixture)."""
    chain_ = Evm()
    settings.CHAIN_ID = chain_.w3.eth.chain_id
    settings.DISTRIBUTOR_ADDRESS = chain_.distributor.address
    settings.OMNIT_TOKEN_ADDRESS = chain_.token.address
    settings.CLAIM_SIGNER_KEY = "0x" + chain_.signer.key.hex().removeprefix("0x")
    settings.CLAIM_RELAYER_KEY = "0x" + chain_.relay_key.key.hex().removeprefix("0x")
    settings.CHAIN_CONFIRMATIONS = CONFIRMATIONS
    settings.WEB3_PROVIDER_URI = "eth-tester://in-process"
    settings.EXPLORER_TX_URL = "https://explorer.example/tx/{tx}"
    monkeypatch.setattr(chain, "provider_factory", lambda: chain_.provider)
    return chain_


_hours = count(1)


def credit(contributor, wei: int) -> RewardEntry:
    """A ledger entry of `wei` for the contributor, in an epoch of its own (no settlement run)."""
    node = Node.objects.filter(owner=contributor).first() or Node.objects.create(
        owner=contributor,
        name="rig",
        token_prefix=f"p{contributor.pk}",
        token_hash=f"h{contributor.pk}",
    )
    gpu = GPU.objects.filter(node=node).first() or GPU.objects.create(
        node=node, uuid=f"GPU-{contributor.pk}", name="NVIDIA H100", memory_total_mib=81559
    )
    start = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(hours=next(_hours))
    epoch = Epoch.objects.create(
        start=start,
        end=start + timedelta(hours=1),
        status=Epoch.Status.SETTLED,
        grace_s=0,
        max_gap_s=30,
        compute_pool_wei=wei,
        idle_pool_wei=0,
    )
    return RewardEntry.objects.create(
        epoch=epoch,
        gpu=gpu,
        contributor=contributor,
        kind=RewardEntry.Kind.COMPUTE,
        units="1",
        amount_wei=wei,
        inputs={},
    )


def post_claim(client: Client):
    return client.post("/api/v1/me/claims", {}, content_type="application/json")


def report_tx(client: Client, claim_id: int, tx_hash: str):
    return client.post(
        f"/api/v1/me/claims/{claim_id}/transaction",
        {"tx_hash": tx_hash},
        content_type="application/json",
    )


def relay_claim(client: Client, claim_id: int):
    return client.post(f"/api/v1/me/claims/{claim_id}/relay", {}, content_type="application/json")


def balance(client: Client) -> dict:
    response = client.get("/api/v1/me/balance")
    assert response.status_code == 200, response.content
    return {k: int(v) for k, v in response.json().items()}
