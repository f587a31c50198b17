"""Which address a request came from, believing X-Forwarded-For only from trusted proxies.

Proxies append the address they received a request from to X-Forwarded-For, so whatever a
client put there comes first. Reading from the right and skipping our own proxies gives the
first address no trusted proxy vouches for: the client. (The leftmost hop is the client's own
say-so, and would let anyone pick a fresh rate-limit bucket per request.)
"""

import ipaddress

from django.conf import settings


def _trusted(address) -> bool:
    return any(address in net for net in settings.TRUSTED_PROXY_NETWORKS)


def client_ip(request) -> str:
    remote = request.META.get("REMOTE_ADDR", "")
    try:
        remote_ip = ipaddress.ip_address(remote)
    except ValueError:
        return remote
    if not _trusted(remote_ip):
        return remote
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    for hop in reversed(hops):
        try:
            address = ipaddress.ip_address(hop)
        except ValueError:
            return remote  # a malformed chain: trust nothing in it
        if not _trusted(address):
            return str(address)
    return remote
