"""RFC 3986 URIs and authorities, checked strictly: the grammar EIP-4361 borrows for its domain,
URI and resources, and the web origin `verify` compares."""

from __future__ import annotations

import ipaddress
import re

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
