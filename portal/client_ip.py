"""Which address a request came from, believing X-Forwarded-For only from trusted proxies."""

import ipaddress

from django.conf import settings


def client_ip(request) -> str:
    remote = request.META.get("REMOTE_ADDR", "")
    try:
        remote_ip = ipaddress.ip_address(remote)
    except ValueError:
        return remote
    if any(remote_ip in net for net in settings.TRUSTED_PROXY_NETWORKS):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        first = forwarded.split(",")[0].strip()
        try:
            return str(ipaddress.ip_address(first))
        except ValueError:
            return remote
    return remote
