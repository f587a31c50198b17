"""Ethereum addresses as people type them: all one case, or EIP-55 mixed case that checks out.

eth-utils 6 `is_address` no longer verifies the checksum of a mixed-case address, so a
mistyped one would silently name another account. A mixed-case address is a promise that the
checksum is right; we hold it to that.
"""

from eth_utils import is_checksum_address, is_hex_address, to_checksum_address


def checksummed(value) -> str | None:
    """The EIP-55 form of `value`, or None if it is not an address (or its checksum is wrong)."""
    if not isinstance(value, str) or not value.startswith("0x") or not is_hex_address(value):
        return None
    digits = value[2:]
    if digits != digits.lower() and digits != digits.upper() and not is_checksum_address(value):
        return None
    return to_checksum_address(value)
