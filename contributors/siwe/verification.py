"""`verify`: a signed message against what this server expects, then its signature (an EOA's,
or an EIP-1271 contract wallet's through the caller's `contract_wallet` hook)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

from eth_account import Account
from eth_account.messages import defunct_hash_message, encode_defunct

from contributors.siwe.message import SiweError, SiweMessage, parse_message
from contributors.siwe.uris import _origin

_SIGNATURE_RE = re.compile(r"0x[0-9a-fA-F]{130}")
# A contract wallet's signature is whatever bytes the wallet understands: any length, even hex.
_ANY_SIGNATURE_RE = re.compile(r"0x(?:[0-9a-fA-F]{2})*")

# contract_wallet(address, eip191_hash, signature) -> True (the wallet accepts the signature),
# False (it refuses) or None (the address is no contract wallet, or no chain to ask); it raises
# SiweError("bad_signature", ...) when the wallet cannot be asked.
ContractWalletCheck = Callable[[str, bytes, bytes], bool | None]


def verify(
    message: SiweMessage | str,
    signature: str,
    *,
    domain: str | None = None,
    nonce: str | None = None,
    chain_id: int | None = None,
    now: datetime | None = None,
    uri_origin: str | None = None,
    contract_wallet: ContractWalletCheck | None = None,
) -> SiweMessage:
    """Check a signed message against what this server expects; return it if all holds.

    Cheap checks run before signature recovery. `domain` is compared case-insensitively (hosts
    are), `uri_origin` (e.g. "https://portal.example") by scheme, host and port, and also
    against the message's optional scheme. An issued-at in the future is the caller's policy.
    When the signature is not an EOA signature by the message's address, `contract_wallet`
    (if given) is asked whether the address is an EIP-1271 wallet that accepts it, with the
    EIP-191 hash of the exact text; without it such a signature is refused as before.
    """
    if isinstance(message, str):
        text = message
        message = parse_message(text)
    else:
        text = message.to_text()
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")

    _check_request(message, domain=domain, uri_origin=uri_origin, chain_id=chain_id, nonce=nonce)
    _check_validity_window(message, now)
    _check_signature(message, text, signature, contract_wallet)
    return message


def _check_request(
    message: SiweMessage,
    *,
    domain: str | None,
    uri_origin: str | None,
    chain_id: int | None,
    nonce: str | None,
) -> None:
    """Refuse a message made out for another domain, origin, chain or nonce (in that order)."""
    if domain is not None and message.domain.lower() != domain.lower():
        raise SiweError("domain_mismatch", f"message is for {message.domain!r}, not {domain!r}")
    if uri_origin is not None:
        expected = _origin(uri_origin)
        if expected is None:
            raise ValueError(f"uri_origin is not an absolute URI with a host: {uri_origin!r}")
        if message.scheme is not None and message.scheme.lower() != expected[0]:
            raise SiweError("domain_mismatch", f"scheme {message.scheme!r} is not {expected[0]!r}")
        if _origin(message.uri) != expected:
            raise SiweError("uri_mismatch", f"URI {message.uri!r} is not on {uri_origin!r}")
    if chain_id is not None and message.chain_id != chain_id:
        raise SiweError("chain_mismatch", f"chain {message.chain_id} is not {chain_id}")
    if nonce is not None and message.nonce != nonce:
        raise SiweError("nonce_mismatch", "nonce does not match the one issued")


def _check_validity_window(message: SiweMessage, now: datetime) -> None:
    """Refuse a message that has expired at `now` or is not valid before a later time."""
    expires = message.expiration_time_dt
    if expires is not None and now >= expires:
        raise SiweError("expired", f"message expired at {message.expiration_time}")
    not_before = message.not_before_dt
    if not_before is not None and now < not_before:
        raise SiweError("not_yet_valid", f"message is not valid before {message.not_before}")


def _check_signature(
    message: SiweMessage,
    text: str,
    signature: str,
    contract_wallet: ContractWalletCheck | None,
) -> None:
    """Accept the address's EOA signature of `text`, else one its contract wallet accepts."""
    eoa_error = _eoa_signature_error(text, signature, message.address)
    if eoa_error is None:
        return
    # Only a signature that is no EOA signature by the address reaches the contract wallet,
    # and only there may it have another length than 65 bytes.
    if (
        contract_wallet is not None
        and isinstance(signature, str)
        and _ANY_SIGNATURE_RE.fullmatch(signature)
    ):
        digest = bytes(defunct_hash_message(text=text))
        verdict = contract_wallet(message.address, digest, bytes.fromhex(signature[2:]))
        if verdict is True:
            return
        if verdict is False:
            raise SiweError(
                "bad_signature",
                f"the contract wallet at {message.address} did not accept the signature (EIP-1271)",
            )
    raise eoa_error


def _eoa_signature_error(text: str, signature: object, address: str) -> SiweError | None:
    """None when `signature` is `address`'s EIP-191 signature of `text`, else why not."""
    if not isinstance(signature, str) or not _SIGNATURE_RE.fullmatch(signature):
        return SiweError("bad_signature", "signature is not 0x-prefixed 65-byte hex")
    try:
        signer = Account.recover_message(encode_defunct(text=text), signature=signature)
    except Exception as exc:  # noqa: BLE001 - eth_keys/eth_utils raise several types here
        return SiweError("bad_signature", f"signature cannot be recovered: {exc}")
    if signer != address:
        return SiweError("bad_signature", f"signed by {signer}, not {address}")
    return None
