"""The chain as the portal sees it: configuration, the compiled contracts and a web3 connection.

Issuing vouchers needs only `ChainConfig` (chain id, distributor, signer key): no node. The
watcher needs `web3()`, which connects to WEB3_PROVIDER_URI; tests point `provider_factory` at
an eth-tester provider (py-evm) instead.
"""

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from django.conf import settings
from eth_account import Account
from eth_utils import is_address, to_checksum_address

from portal.lib.errors import Refused

ARTIFACTS = Path(__file__).resolve().parent.parent / "contracts" / "artifacts.json"


@cache
def artifacts() -> dict:
    """contracts/artifacts.json: ABI and bytecode of each contract, as `contracts/build` wrote."""
    return json.loads(ARTIFACTS.read_text())["contracts"]


def abi(name: str = "RewardDistributor") -> list:
    return artifacts()[name]["abi"]


def bytecode(name: str) -> str:
    return artifacts()[name]["bytecode"]


@dataclass(frozen=True)
class ChainConfig:
    """What signing a voucher needs. The key stays in memory, never in the database."""

    chain_id: int
    distributor: str
    signer_key: str
    token: str | None

    @property
    def signer(self) -> str:
        return Account.from_key(self.signer_key).address


def _address(name: str, value: str) -> str:
    if not is_address(value):
        raise Refused(503, "chain_not_configured", f"{name} is not an Ethereum address.")
    return to_checksum_address(value)


def config() -> ChainConfig:
    """The configured chain, or Refused(503, "chain_not_configured") naming what is missing."""
    missing = [
        name
        for name, value in (
            ("DISTRIBUTOR_ADDRESS", settings.DISTRIBUTOR_ADDRESS),
            ("CLAIM_SIGNER_KEY", settings.CLAIM_SIGNER_KEY),
        )
        if not value
    ]
    if missing:
        raise Refused(
            503,
            "chain_not_configured",
            f"Claims are not available: {' and '.join(missing)} not set on the portal.",
        )
    try:
        Account.from_key(settings.CLAIM_SIGNER_KEY)
    except (ValueError, TypeError):
        raise Refused(503, "chain_not_configured", "CLAIM_SIGNER_KEY is not a key.") from None
    token = settings.OMNIT_TOKEN_ADDRESS
    return ChainConfig(
        chain_id=settings.CHAIN_ID,
        distributor=_address("DISTRIBUTOR_ADDRESS", settings.DISTRIBUTOR_ADDRESS),
        signer_key=settings.CLAIM_SIGNER_KEY,
        token=_address("OMNIT_TOKEN_ADDRESS", token) if token else None,
    )


def default_provider():
    from web3 import Web3

    uri = settings.WEB3_PROVIDER_URI
    if not uri:
        return None
    if uri.startswith(("http://", "https://")):
        return Web3.HTTPProvider(uri, request_kwargs={"timeout": 30})
    if uri.startswith(("ws://", "wss://")):
        from web3.providers.legacy_websocket import LegacyWebSocketProvider

        return LegacyWebSocketProvider(uri)
    return Web3.IPCProvider(uri)


# Tests replace this with `lambda: EthereumTesterProvider(...)`; it returns None when no chain
# is configured.
provider_factory = default_provider


def web3():
    """A Web3 connected to the configured node, or None without WEB3_PROVIDER_URI."""
    from web3 import Web3

    provider = provider_factory()
    return None if provider is None else Web3(provider)


def distributor_contract(w3, address: str):
    return w3.eth.contract(address=to_checksum_address(address), abi=abi())


def encode_claim_call(account: str, cumulative_wei: int, deadline: int, signature: str) -> str:
    """The calldata of claim(account, cumulativeAmount, deadline, signature), 0x-hex."""
    from web3 import Web3

    contract = Web3().eth.contract(abi=abi())
    return contract.encode_abi(
        "claim", args=[account, cumulative_wei, deadline, bytes.fromhex(signature[2:])]
    )


def tx_url(tx_hash: str) -> str | None:
    """The explorer page of a transaction (EXPLORER_TX_URL with {tx}), or None."""
    template = settings.EXPLORER_TX_URL
    if not template or not tx_hash:
        return None
    return template.replace("{tx}", tx_hash) if "{tx}" in template else template + tx_hash
