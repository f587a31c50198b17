"""Sign-In with Ethereum (EIP-4361): a strict parser, builder and verifier of our own.

The `siwe` package on PyPI pins web3<8 and no longer imports with the current `abnf`, and the
grammar is small enough that owning it is cheaper than pinning around it. Strictness is the
point: the signed text is the only thing a wallet owner agreed to, so any byte we cannot map
back to a field is a reason to refuse, never to guess. Every accepted message round-trips
exactly (`parse_message(text).to_text() == text`); to keep that true we also refuse two forms
the ABNF allows but that have no field to hold them: a chain ID with leading zeros and a
`Resources:` header with no resources.

EIP-1271 contract wallets need an RPC call, which this module never makes: `verify` takes a
`contract_wallet` hook that the portal backs with its chain (`contributors.eip1271`). EIP-6492
(wallets not deployed yet) is out of scope. Nothing here imports Django, so it is testable on
its own.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

from eth_account import Account
from eth_account.messages import defunct_hash_message, encode_defunct
from eth_utils import to_checksum_address

ErrorCode = Literal[
    "malformed_message",
    "domain_mismatch",
    "uri_mismatch",
    "chain_mismatch",
    "nonce_mismatch",
    "expired",
    "not_yet_valid",
    "bad_signature",
]


class SiweError(Exception):
    """A refused message; `code` is stable for callers, `detail` is for humans."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code: ErrorCode = code
        self.detail = detail


def _malformed(detail: str) -> SiweError:
    return SiweError("malformed_message", detail)


# RFC 3986 character classes, spelled out so that nothing outside ASCII slips through `\w`/`\d`.
_UNRESERVED = r"A-Za-z0-9\-._~"
_SUB_DELIMS = r"!$&'()*+,;="
_PCT = r"%[0-9A-Fa-f]{2}"
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_USERINFO_RE = re.compile(rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:]|{_PCT})*")
_REG_NAME_RE = re.compile(rf"(?:[{_UNRESERVED}{_SUB_DELIMS}]|{_PCT})*")
_IPVFUTURE_RE = re.compile(rf"[vV][0-9A-Fa-f]+\.[{_UNRESERVED}{_SUB_DELIMS}:]+")
_PATH_RE = re.compile(rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:@/]|{_PCT})*")
_PCHARS_RE = re.compile(rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:@]|{_PCT})*")
_QUERY_RE = re.compile(rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:@/?]|{_PCT})*")
# RFC 3986 appendix B splits any string; the pieces are then checked one by one.
_URI_SPLIT_RE = re.compile(r"([^:/?#]+):(?://([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?", re.S)
_AUTHORITY_SPLIT_RE = re.compile(r"(?:([^@]*)@)?(\[[^\]]*\]|[^:]*)(?::(.*))?", re.S)
_PORT_RE = re.compile(r"[0-9]*")

# EIP-4361 ABNF: statement = *( reserved / unreserved / " " ); nonce = 8*( ALPHA / DIGIT ).
_STATEMENT_RE = re.compile(rf"[{_UNRESERVED}{_SUB_DELIMS}:/?#\[\]@ ]*")
_NONCE_RE = re.compile(r"[A-Za-z0-9]{8,}")
_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")
_CHAIN_ID_RE = re.compile(r"0|[1-9][0-9]{0,77}")
_SIGNATURE_RE = re.compile(r"0x[0-9a-fA-F]{130}")
# A contract wallet's signature is whatever bytes the wallet understands: any length, even hex.
_ANY_SIGNATURE_RE = re.compile(r"0x(?:[0-9a-fA-F]{2})*")

# contract_wallet(address, eip191_hash, signature) -> True (the wallet accepts the signature),
# False (it refuses) or None (the address is no contract wallet, or no chain to ask); it raises
# SiweError("bad_signature", ...) when the wallet cannot be asked.
ContractWalletCheck = Callable[[str, bytes, bytes], bool | None]
_DATETIME_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)
_HEADER_SUFFIX = " wants you to sign in with your Ethereum account:"
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _split_authority(authority: str) -> tuple[str | None, str, str | None] | None:
    """(userinfo, host, port) of a valid RFC 3986 authority, or None."""
    m = _AUTHORITY_SPLIT_RE.fullmatch(authority)
    if m is None:
        return None
    userinfo, host, port = m.groups()
    if userinfo is not None and not _USERINFO_RE.fullmatch(userinfo):
        return None
    if port is not None and not _PORT_RE.fullmatch(port):
        return None
    if host.startswith("["):
        inner = host[1:-1]
        if not _IPVFUTURE_RE.fullmatch(inner):
            # Zone IDs ("%eth0") are RFC 6874, not RFC 3986; ipaddress would accept them.
            if "%" in inner:
                return None
            try:
                ipaddress.IPv6Address(inner)
            except ValueError:
                return None
    elif not _REG_NAME_RE.fullmatch(host):
        return None
    return userinfo, host, port


def _split_uri(uri: str) -> tuple[str, str | None] | None:
    """(scheme, authority) of a valid absolute RFC 3986 URI, or None."""
    m = _URI_SPLIT_RE.fullmatch(uri)
    if m is None:
        return None
    scheme, authority, path, query, fragment = m.groups()
    if not _SCHEME_RE.fullmatch(scheme) or not _PATH_RE.fullmatch(path):
        return None
    if authority is not None and _split_authority(authority) is None:
        return None
    if authority is None and path.startswith("//"):
        return None
    if any(part is not None and not _QUERY_RE.fullmatch(part) for part in (query, fragment)):
        return None
    return scheme, authority


def _origin(uri: str) -> tuple[str, str, int | None] | None:
    """Web origin (scheme, host, port) of a URI with an authority, default ports filled in."""
    split = _split_uri(uri)
    if split is None or split[1] is None:
        return None
    scheme, authority = split
    parts = _split_authority(authority)
    if parts is None or not parts[1]:
        return None
    _, host, port = parts
    scheme = scheme.lower()
    return scheme, host.lower(), int(port) if port else _DEFAULT_PORTS.get(scheme)


def _parse_datetime(value: str, name: str) -> datetime:
    m = _DATETIME_RE.fullmatch(value)
    if m is None:
        raise _malformed(f"{name} is not an RFC 3339 date-time: {value!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac, sign, off_h, off_m = m.groups()[6:]
    if off_h is None:
        tz = UTC
    elif int(off_h) > 23 or int(off_m) > 59:
        raise _malformed(f"{name} has an impossible UTC offset: {value!r}")
    else:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        tz = timezone(-offset if sign == "-" else offset)
    # RFC 3339 allows a leap second (:60); datetime cannot hold one, so it becomes the next
    # second, which is the instant it denotes to within that second.
    leap = second == 60
    micro = int((frac or "0")[:6].ljust(6, "0"))
    try:
        parsed = datetime(year, month, day, hour, minute, second - leap, micro, tzinfo=tz)
    except ValueError as exc:
        raise _malformed(f"{name} is not a valid date-time: {value!r} ({exc})") from None
    return parsed + timedelta(seconds=1) if leap else parsed


@dataclass(frozen=True, kw_only=True)
class SiweMessage:
    """One EIP-4361 message. Construction validates every field, so an instance is always valid.

    Timestamps are kept exactly as written (the signature covers the text, not the instant);
    use the `*_dt` properties for comparisons. `resources` accepts any list or tuple of strings
    and is stored as a tuple.
    """

    domain: str
    address: str
    uri: str
    version: str
    chain_id: int
    nonce: str
    issued_at: str
    scheme: str | None = None
    statement: str | None = None
    expiration_time: str | None = None
    not_before: str | None = None
    request_id: str | None = None
    resources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("domain", "address", "uri", "version", "nonce", "issued_at"):
            if not isinstance(getattr(self, name), str):
                raise _malformed(f"{name} must be a string")
        for name in ("scheme", "statement", "expiration_time", "not_before", "request_id"):
            if not isinstance(getattr(self, name), str | None):
                raise _malformed(f"{name} must be a string or None")
        if not isinstance(self.resources, list | tuple) or not all(
            isinstance(r, str) for r in self.resources
        ):
            raise _malformed("resources must be a list of strings")
        object.__setattr__(self, "resources", tuple(self.resources))

        if self.scheme is not None and not _SCHEME_RE.fullmatch(self.scheme):
            raise _malformed(f"scheme is not an RFC 3986 scheme: {self.scheme!r}")
        parts = _split_authority(self.domain)
        # RFC 3986 tolerates an empty host; a sign-in request with no host names nobody.
        if parts is None or not parts[1]:
            raise _malformed(f"domain is not an RFC 3986 authority: {self.domain!r}")
        if not _ADDRESS_RE.fullmatch(self.address):
            raise _malformed(f"address is not a 0x-prefixed 20-byte hex string: {self.address!r}")
        if to_checksum_address(self.address) != self.address:
            raise _malformed(f"address is not EIP-55 checksummed: {self.address!r}")
        if self.statement is not None and not _STATEMENT_RE.fullmatch(self.statement):
            raise _malformed("statement may hold only printable ASCII URI characters and spaces")
        if _split_uri(self.uri) is None:
            raise _malformed(f"uri is not an RFC 3986 URI: {self.uri!r}")
        if self.version != "1":
            raise _malformed(f"version must be '1', not {self.version!r}")
        # Exactly int: bool is an int subclass, and True is not a chain. EIP-155 ids are uint256.
        if type(self.chain_id) is not int or not 0 <= self.chain_id < 2**256:
            raise _malformed(f"chain_id must be a non-negative integer, not {self.chain_id!r}")
        if not _NONCE_RE.fullmatch(self.nonce):
            raise _malformed("nonce must be at least 8 ASCII letters or digits")
        for name in ("issued_at", "expiration_time", "not_before"):
            if (value := getattr(self, name)) is not None:
                _parse_datetime(value, name)
        if self.request_id is not None and not _PCHARS_RE.fullmatch(self.request_id):
            raise _malformed(f"request_id is not a sequence of URI pchars: {self.request_id!r}")
        for i, resource in enumerate(self.resources, 1):
            if _split_uri(resource) is None:
                raise _malformed(f"resource {i} is not an RFC 3986 URI: {resource!r}")

    @property
    def issued_at_dt(self) -> datetime:
        return _parse_datetime(self.issued_at, "issued_at")

    @property
    def expiration_time_dt(self) -> datetime | None:
        if self.expiration_time is None:
            return None
        return _parse_datetime(self.expiration_time, "expiration_time")

    @property
    def not_before_dt(self) -> datetime | None:
        if self.not_before is None:
            return None
        return _parse_datetime(self.not_before, "not_before")

    def to_text(self) -> str:
        """The exact text a wallet signs (LF line ends, no trailing newline)."""
        origin = f"{self.scheme}://{self.domain}" if self.scheme else self.domain
        lines = [origin + _HEADER_SUFFIX, self.address, ""]
        # No statement still leaves its blank line: the ABNF's LF after the optional part.
        lines += [""] if self.statement is None else [self.statement, ""]
        lines += [
            f"URI: {self.uri}",
            f"Version: {self.version}",
            f"Chain ID: {self.chain_id}",
            f"Nonce: {self.nonce}",
            f"Issued At: {self.issued_at}",
        ]
        for label, value in (
            ("Expiration Time", self.expiration_time),
            ("Not Before", self.not_before),
            ("Request ID", self.request_id),
        ):
            if value is not None:
                lines.append(f"{label}: {value}")
        if self.resources:
            lines.append("Resources:")
            lines += [f"- {r}" for r in self.resources]
        return "\n".join(lines)


_FIELD_NAMES = frozenset(f.name for f in fields(SiweMessage))
_REQUIRED_FIELDS = frozenset(f.name for f in fields(SiweMessage) if f.default is MISSING)


def build_message(values: Mapping[str, Any]) -> str:
    """Message text from snake_case field values (as `SiweMessage`), validated."""
    if unknown := set(values) - _FIELD_NAMES:
        raise _malformed(f"unknown fields: {', '.join(sorted(unknown))}")
    if missing := _REQUIRED_FIELDS - set(values):
        raise _malformed(f"missing fields: {', '.join(sorted(missing))}")
    return SiweMessage(**values).to_text()


def parse_message(text: str) -> SiweMessage:
    """Parse EIP-4361 text; anything the grammar does not allow raises malformed_message."""
    if not isinstance(text, str):
        raise _malformed("message must be a string")
    lines = text.split("\n")
    pos = 0

    def maybe(prefix: str) -> str | None:
        nonlocal pos
        if pos < len(lines) and lines[pos].startswith(prefix):
            pos += 1
            return lines[pos - 1][len(prefix) :]
        return None

    def take(prefix: str) -> str:
        value = maybe(prefix)
        if value is None:
            got = repr(lines[pos]) if pos < len(lines) else "end of message"
            raise _malformed(f"line {pos + 1}: expected {prefix.strip()!r}, got {got}")
        return value

    if len(lines) < 5:
        raise _malformed("message is too short to be EIP-4361")
    if not lines[0].endswith(_HEADER_SUFFIX):
        raise _malformed(f"line 1 must end with {_HEADER_SUFFIX.strip()!r}")
    origin = lines[0][: -len(_HEADER_SUFFIX)]
    # An authority never contains "/", so "://" can only end a scheme.
    scheme, _, domain = origin.partition("://") if "://" in origin else (None, "", origin)
    address = lines[1]
    if lines[2] != "":
        raise _malformed("line 3 must be empty")
    # Without a statement, line 4 is blank and line 5 is URI; with one (even an empty one),
    # line 4 is the statement and line 5 is blank.
    statement: str | None = None
    if lines[3] == "" and lines[4] != "":
        pos = 4
    else:
        statement = lines[3]
        if lines[4] != "":
            raise _malformed("statement must be a single line followed by an empty line")
        pos = 5

    uri = take("URI: ")
    version = take("Version: ")
    chain_id_text = take("Chain ID: ")
    nonce = take("Nonce: ")
    issued_at = take("Issued At: ")
    expiration_time = maybe("Expiration Time: ")
    not_before = maybe("Not Before: ")
    request_id = maybe("Request ID: ")
    resources: list[str] = []
    if pos < len(lines) and lines[pos] == "Resources:":
        pos += 1
        while pos < len(lines):
            resources.append(take("- "))
        if not resources:
            raise _malformed("'Resources:' must be followed by at least one resource")
    if pos != len(lines):
        raise _malformed(f"line {pos + 1}: unexpected {lines[pos]!r} (fields out of order?)")

    if not _CHAIN_ID_RE.fullmatch(chain_id_text):
        raise _malformed(f"Chain ID must be a decimal integer, no leading zeros: {chain_id_text!r}")
    return SiweMessage(
        scheme=scheme,
        domain=domain,
        address=address,
        statement=statement,
        uri=uri,
        version=version,
        chain_id=int(chain_id_text),
        nonce=nonce,
        issued_at=issued_at,
        expiration_time=expiration_time,
        not_before=not_before,
        request_id=request_id,
        resources=tuple(resources),
    )


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
    expires = message.expiration_time_dt
    if expires is not None and now >= expires:
        raise SiweError("expired", f"message expired at {message.expiration_time}")
    not_before = message.not_before_dt
    if not_before is not None and now < not_before:
        raise SiweError("not_yet_valid", f"message is not valid before {message.not_before}")

    eoa_error = _eoa_signature_error(text, signature, message.address)
    if eoa_error is None:
        return message
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
            return message
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
