"""Sign-In with Ethereum (EIP-4361), by topic: `uris` (RFC 3986, strictly), `message`
(`SiweMessage`, `build_message`, `parse_message`, `SiweError` and its codes) and `verification`
(`verify`). `message`'s docstring says why the package is ours and strict.

EIP-1271 contract wallets need an RPC call, which this package never makes: `verify` takes a
`contract_wallet` hook that the portal backs with its chain (`contributors.eip1271`). EIP-6492
(wallets not deployed yet) is out of scope. Nothing here imports Django, so it is testable on
its own.
"""

from contributors.siwe.message import (
    ErrorCode,
    SiweError,
    SiweMessage,
    build_message,
    parse_message,
)
from contributors.siwe.verification import ContractWalletCheck, verify

__all__ = [
    "ContractWalletCheck",
    "ErrorCode",
    "SiweError",
    "SiweMessage",
    "build_message",
    "parse_message",
    "verify",
]
