"""Secrets handed to machines: random, shown once, stored as a hash, found by a public prefix.

A token reads `omt_<prefix>_<secret>`. The prefix is not secret: it finds the row with an index,
then the SHA-256 of the whole token is compared in constant time. A leaked database yields no
usable token, and a timing probe learns nothing about the secret part.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass

TOKEN_SCHEME = "omt"  # noqa: S105 - a public label, not a secret
PREFIX_BYTES = 6  # 12 hex characters: unique enough to index, useless to an attacker
SECRET_BYTES = 32


@dataclass(frozen=True)
class IssuedToken:
    """A new token: `plaintext` goes to its holder once; `prefix` and `digest` are stored."""

    plaintext: str
    prefix: str
    digest: str


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(scheme: str = TOKEN_SCHEME) -> IssuedToken:
    prefix = secrets.token_hex(PREFIX_BYTES)
    plaintext = f"{scheme}_{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return IssuedToken(plaintext=plaintext, prefix=prefix, digest=digest(plaintext))


def split_prefix(token: str, scheme: str = TOKEN_SCHEME) -> str | None:
    """The lookup prefix of a well-formed token, or None for anything else."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != scheme or len(parts[1]) != PREFIX_BYTES * 2:
        return None
    if any(c not in "0123456789abcdef" for c in parts[1]) or not parts[2]:
        return None
    return parts[1]


def matches(token: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(token), stored_digest)
