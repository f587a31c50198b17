"""EIP-1271: asking a smart-contract wallet whether it accepts a signature, on the portal's chain.

`contributors.siwe.verify` calls `is_valid_signature` (its `contract_wallet` hook) only after a
signature failed to recover to the message's address. With no chain configured
(WEB3_PROVIDER_URI unset and no provider injected into `rewards.chain.provider_factory`), or
when the address has no code, the answer is None and the EOA refusal stands. A contract is
asked `isValidSignature(bytes32 hash, bytes signature)`; it accepts by returning the magic value
0x1626ba7e, anything else (another value, a revert, garbage) refuses. A node that cannot be
reached or answers an error refuses too, with a detail that says so: never a 500, and never the
node's URL (it often carries an API key) in what the client sees.
"""

import logging

from eth_abi import encode
from eth_utils import to_checksum_address

from contributors.siwe import SiweError
from rewards import chain

log = logging.getLogger(__name__)

# bytes4(keccak256("isValidSignature(bytes32,bytes)")): both the selector and the magic value.
MAGIC_VALUE = bytes.fromhex("1626ba7e")


def _revert_errors() -> tuple[type[Exception], ...]:
    """What web3 raises when the call itself reverted (an answer, not an RPC failure)."""
    from web3.exceptions import ContractCustomError, ContractLogicError, ContractPanicError

    errors: tuple[type[Exception], ...] = (
        ContractLogicError,
        ContractCustomError,
        ContractPanicError,
    )
    try:  # eth-tester (py-evm, in tests) reports a reverted eth_call in its own way
        from eth_tester.exceptions import TransactionFailed
    except ImportError:
        return errors
    return (*errors, TransactionFailed)


def is_valid_signature(address: str, message_hash: bytes, signature: bytes) -> bool | None:
    """True if the contract wallet at `address` accepts `signature` over `message_hash`, False
    if it refuses, None if there is no chain to ask or no contract at the address.

    Raises SiweError("bad_signature") when the chain is configured but cannot be asked.
    """
    try:
        w3 = chain.web3()
        if w3 is None:
            return None
        address = to_checksum_address(address)
        if not w3.eth.get_code(address):
            return None
        data = MAGIC_VALUE + encode(["bytes32", "bytes"], [message_hash, signature])
        result = bytes(w3.eth.call({"to": address, "data": "0x" + data.hex()}))
    except _revert_errors():
        return False
    except Exception as exc:  # noqa: BLE001 - transports and nodes fail in many ways
        log.warning("EIP-1271 check of %s failed: %r", address, exc)
        raise SiweError(
            "bad_signature",
            f"the signature is not {address}'s own, and the contract wallet at that address "
            "could not be asked to check it (EIP-1271): the portal's chain node did not answer",
        ) from None
    # An ABI-encoded bytes4: the value left-aligned in one 32-byte word.
    return len(result) >= 32 and result[:32] == MAGIC_VALUE + bytes(28)
