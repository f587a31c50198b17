"""Sign-In with Ethereum (EIP-4361): a strict parser, builder and verifier of our own.

The `siwe` package on PyPI pins web3<8 and no longer imports with the current `abnf`, and the
grammar is small enough that owning it is cheaper than pinning around it. Strictness is the
point: the signed text is the only thing a wallet owner agreed to, so any byte we cannot map
back to a field is a reason to refuse, never to guess. Every accepted message round-trips
exactly (`parse_message(text).to_text() == text`); to keep that true we also refuse two forms
the ABNF allows but that have no field to hold them: a chain ID with leading zeros and a
`Resources:` header with no resources.

This module holds the message (`SiweMessage`, `build_message`, `parse_message`) and `SiweError`;
`contributors.siwe.uris` the RFC 3986 grammar, `contributors.siwe.verification` `verify`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

from eth_utils import to_checksum_address

from contributors.siwe.uris import (
    _PCHARS_RE,
    _SCHEME_RE,
    _SUB_DELIMS,
    _UNRESERVED,
    _split_authority,
    _split_uri,
)

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


# EIP-4361 ABNF: statement = *( reserved / unreserved / " " ); nonce = 8*( ALPHA / DIGIT ).
_STATEMENT_RE = re.compile(rf"[{_UNRESERVED}{_SUB_DELIMS}:/?#\[\]@ ]*")
_NONCE_RE = re.compile(r"[A-Za-z0-9]{8,}")
_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")
_CHAIN_ID_RE = re.compile(r"0|[1-9][0-9]{0,77}")
_DATETIME_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)
_HEADER_SUFFIX = " wants you to sign in with your Ethereum account:"


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


class _Lines:
    """The message's lines and the index of the next one to read."""

    def __init__(self, lines: list[str], pos: int) -> None:
        self.lines = lines
        self.pos = pos

    def at_end(self) -> bool:
        return self.pos >= len(self.lines)

    def maybe(self, prefix: str) -> str | None:
        """The next line after `prefix` (and move past it), or None if it does not start so."""
        if not self.at_end() and self.lines[self.pos].startswith(prefix):
            self.pos += 1
            return self.lines[self.pos - 1][len(prefix) :]
        return None

    def take(self, prefix: str) -> str:
        """As `maybe`, but the line must be there."""
        value = self.maybe(prefix)
        if value is None:
            got = "end of message" if self.at_end() else repr(self.lines[self.pos])
            raise _malformed(f"line {self.pos + 1}: expected {prefix.strip()!r}, got {got}")
        return value


def parse_message(text: str) -> SiweMessage:
    """Parse EIP-4361 text; anything the grammar does not allow raises malformed_message."""
    if not isinstance(text, str):
        raise _malformed("message must be a string")
    lines = text.split("\n")
    head, pos = _parse_head(lines)
    return SiweMessage(**head, **_parse_fields(_Lines(lines, pos)))


def _parse_head(lines: list[str]) -> tuple[dict[str, Any], int]:
    """Scheme, domain, address and statement of the lines before `URI:`, and where that is."""
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
    return {"scheme": scheme, "domain": domain, "address": address, "statement": statement}, pos


def _parse_fields(cursor: _Lines) -> dict[str, Any]:
    """The labelled fields from `URI:` to the end of the message, in the ABNF's order."""
    take, maybe = cursor.take, cursor.maybe
    uri = take("URI: ")
    version = take("Version: ")
    chain_id_text = take("Chain ID: ")
    nonce = take("Nonce: ")
    issued_at = take("Issued At: ")
    expiration_time = maybe("Expiration Time: ")
    not_before = maybe("Not Before: ")
    request_id = maybe("Request ID: ")
    resources = _parse_resources(cursor)
    lines, pos = cursor.lines, cursor.pos
    if pos != len(lines):
        raise _malformed(f"line {pos + 1}: unexpected {lines[pos]!r} (fields out of order?)")

    if not _CHAIN_ID_RE.fullmatch(chain_id_text):
        raise _malformed(f"Chain ID must be a decimal integer, no leading zeros: {chain_id_text!r}")
    return {
        "uri": uri,
        "version": version,
        "chain_id": int(chain_id_text),
        "nonce": nonce,
        "issued_at": issued_at,
        "expiration_time": expiration_time,
        "not_before": not_before,
        "request_id": request_id,
        "resources": resources,
    }


def _parse_resources(cursor: _Lines) -> tuple[str, ...]:
    """The optional `Resources:` list; once it starts, every line to the end is a resource."""
    resources: list[str] = []
    if not cursor.at_end() and cursor.lines[cursor.pos] == "Resources:":
        cursor.pos += 1
        while not cursor.at_end():
            resources.append(cursor.take("- "))
        if not resources:
            raise _malformed("'Resources:' must be followed by at least one resource")
    return tuple(resources)
