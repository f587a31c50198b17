"""The channels an alert can take, and the checks on where they point.

A contributor's webhook or Apprise URL is an attacker's input: it must not make the portal talk
to its own network (loopback, private, link-local, reserved addresses). Webhooks are checked at
the moment of sending and sent to the very address that was checked (no second lookup a DNS
rebinding could change), never follow redirects, and read only the status line and headers
of the answer, each wait bounded by ALERT_SEND_TIMEOUT_S. Apprise URLs are limited to
ALERT_APPRISE_SCHEMES; where the URL names a host it is checked the same way before every
send, redirects are off and the timeouts are ours; Apprise resolves the host again itself, so a
DNS rebinding between the two lookups is the one gap left (webhooks have none).
"""

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import apprise
import urllib3
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage, get_connection
from django.core.validators import validate_email

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-OmniTensor-Signature"
DELIVERY_HEADER = "X-OmniTensor-Delivery"


class TargetRefused(ValueError):
    """The channel's target is not acceptable (shown to the contributor as is)."""


class SendFailed(Exception):
    """A send that did not go through (the message is kept on the delivery)."""


@dataclass(frozen=True)
class Message:
    """What one delivery sends: the same words to every channel, plus facts for webhooks."""

    delivery_id: str
    kind: str
    title: str
    body: str
    data: dict
    unsubscribe_url: str = ""


# --- checks --------------------------------------------------------------------------------


# Ranges Python's `is_global` has let through in some releases, or that carry an IPv4 address
# a gateway would reach: IPv4-compatible (::/96), site-local, 6to4, Teredo, NAT64.
REFUSED_V6 = [
    ipaddress.ip_network(n)
    for n in ("::/96", "fec0::/10", "2002::/16", "2001::/32", "64:ff9b::/96", "64:ff9b:1::/48")
]


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return _is_public(address.ipv4_mapped)
        if any(address in network for network in REFUSED_V6):
            return False
    return address.is_global and not address.is_multicast


def public_addresses(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, all of them public (else TargetRefused)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"{host} does not resolve ({exc}).") from None
    addresses = []
    for info in infos:
        text = info[4][0].split("%", 1)[0]
        address = ipaddress.ip_address(text)
        if not settings.ALERT_ALLOW_PRIVATE_TARGETS and not _is_public(address):
            raise TargetRefused(
                f"{host} resolves to {address}, a loopback, private or reserved address: "
                "alerts go only to public addresses."
            )
        addresses.append(text)
    if not addresses:
        raise TargetRefused(f"{host} has no address.")
    return addresses


def check_email(target: str) -> str:
    target = target.strip()
    try:
        validate_email(target)
    except ValidationError:
        raise TargetRefused(f"{target[:80]!r} is not an email address.") from None
    return target


def check_webhook(target: str, resolve: bool = True) -> str:
    """An http(s) URL without credentials whose host is public (resolved now if `resolve`)."""
    target = target.strip()
    try:
        parts = urlsplit(target)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise TargetRefused(f"Not a URL: {exc}.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("A webhook URL starts with https:// (or http://) and names a host.")
    if parts.username or parts.password:
        raise TargetRefused("Put no user or password in a webhook URL: requests are signed.")
    if resolve:
        public_addresses(parts.hostname, port)
    return target


def check_apprise(target: str, resolve: bool = True) -> str:
    """An Apprise URL of an allowed scheme that Apprise understands, its host (if it names
    one that resolves) public."""
    target = target.strip()
    scheme = target.partition("://")[0].lower()
    if scheme not in settings.ALERT_APPRISE_SCHEMES:
        allowed = ", ".join(f"{s}://" for s in settings.ALERT_APPRISE_SCHEMES)
        raise TargetRefused(f"Apprise URLs here start with one of {allowed}.")
    plugin = _plugin(target)
    if resolve:
        _check_plugin_host(plugin, scheme)
    return target


# Apprise schemes whose URL names the server to connect to; the others name a service with a
# fixed host, and what stands where a host would (a bot id, a token) is never looked up.
HOSTED_SCHEMES = {"json", "jsons", "ntfy", "ntfys", "matrix", "matrixs", "gotify", "gotifys",
                  "mmost", "mmosts"}  # fmt: skip


def _plugin(target: str):
    plugin = apprise.Apprise.instantiate(target, suppress_exceptions=True)
    if plugin is None:
        raise TargetRefused("Apprise does not understand this URL (see its wiki for the form).")
    plugin.redirects = False
    plugin.socket_connect_timeout = float(settings.ALERT_SEND_TIMEOUT_S)
    plugin.socket_read_timeout = float(settings.ALERT_SEND_TIMEOUT_S)
    if hasattr(plugin, "discovery"):
        # Matrix discovery asks the named server where the homeserver is and then goes there:
        # a second hop to any address. The URL's server is the one it talks to, or none.
        plugin.discovery = False
    return plugin


def _check_plugin_host(plugin, scheme: str) -> None:
    host = (getattr(plugin, "host", None) or "").strip("[]")
    if scheme in HOSTED_SCHEMES and host:
        public_addresses(host, 443)


def check(kind: str, target: str, resolve: bool = True) -> str:
    if kind == "email":
        return check_email(target)
    if kind == "webhook":
        return check_webhook(target, resolve)
    if kind == "apprise":
        return check_apprise(target, resolve)
    raise TargetRefused(f"Unknown channel kind {kind!r}.")


# --- webhooks ------------------------------------------------------------------------------


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>` (README "Webhooks")."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def webhook_body(message: Message) -> bytes:
    payload = {
        "id": message.delivery_id,
        "event": message.kind,
        "title": message.title,
        "text": message.body,
        "data": message.data,
    }
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def send_webhook(url: str, secret: str, message: Message) -> None:
    parts = urlsplit(check_webhook(url, resolve=False))
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    address = public_addresses(parts.hostname, port)[0]
    body = webhook_body(message)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "OmniTensor-Alerts/1",
        "Host": parts.netloc.rsplit("@", 1)[-1],
        DELIVERY_HEADER: message.delivery_id,
        "X-OmniTensor-Event": message.kind,
        SIGNATURE_HEADER: signature(secret, int(time.time()), body),
    }
    timeout = urllib3.Timeout(
        connect=settings.ALERT_SEND_TIMEOUT_S, read=settings.ALERT_SEND_TIMEOUT_S
    )
    if https:
        pool = urllib3.HTTPSConnectionPool(
            address,
            port,
            server_hostname=parts.hostname,
            assert_hostname=parts.hostname,
            cert_reqs="CERT_REQUIRED",
            timeout=timeout,
            retries=False,
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        with pool:
            answer = pool.urlopen(
                "POST", path, body=body, headers=headers, redirect=False, preload_content=False
            )
            # The status line and headers are the answer; the body is never read. A receiver
            # that trickles its headers meets the task's time limit, which ends before the
            # delivery's lease (contributors.tasks.deliver_alert).
            answer.close()
    except urllib3.exceptions.HTTPError as exc:
        raise SendFailed(f"{type(exc).__name__}: {exc}"[:300]) from None
    if 300 <= answer.status < 400:
        raise SendFailed(f"HTTP {answer.status}: redirects are not followed.")
    if not 200 <= answer.status < 300:
        raise SendFailed(f"HTTP {answer.status} from the webhook.")


# --- apprise -------------------------------------------------------------------------------


def send_apprise(url: str, message: Message) -> None:
    try:
        plugin = _plugin(url)
        _check_plugin_host(plugin, url.partition("://")[0].lower())
    except TargetRefused as exc:
        raise SendFailed(str(exc)) from None
    with apprise.LogCapture(level=apprise.logging.WARNING) as logs:
        ok = plugin.notify(body=message.body, title=message.title)
    if not ok:
        said = logs.getvalue().strip().splitlines()
        raise SendFailed((said[-1] if said else "Apprise could not send it.")[:300])


# --- email ---------------------------------------------------------------------------------


def send_email(address: str, message: Message) -> None:
    domain = settings.DEFAULT_FROM_EMAIL.rsplit("@", 1)[-1].strip(">") or "localhost"
    headers = {
        # The same id on every attempt of this delivery: a repeat after a killed worker is one
        # message to a mail client.
        "Message-ID": f"<alert-{message.delivery_id}@{domain}>",
        DELIVERY_HEADER: message.delivery_id,
    }
    body = message.body
    if message.unsubscribe_url:
        headers["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        body += (
            "\n\n--\nYou get this because you added this address to your OmniTensor alerts.\n"
            f"Unsubscribe (no sign-in needed): {message.unsubscribe_url}\n"
        )
    email = EmailMessage(
        subject=message.title,
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[address],
        headers=headers,
        connection=get_connection(fail_silently=False),
    )
    try:
        email.send()
    except (OSError, ValueError) as exc:  # smtplib errors are OSErrors
        raise SendFailed(f"{type(exc).__name__}: {exc}"[:300]) from None
