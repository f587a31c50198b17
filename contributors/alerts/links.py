"""Signed links in emails: one verifies the address, one unsubscribes it, neither needs a
sign-in. They name the channel and a digest of its address, signed with SECRET_KEY, so a link
cannot be guessed, altered or used for another address."""

import hashlib

from django.conf import settings
from django.core import signing
from django.urls import reverse

from contributors.models import AlertChannel

VERIFY_MAX_AGE_S = 7 * 24 * 3600


def _digest(channel: AlertChannel) -> str:
    return hashlib.sha256(channel.target.encode()).hexdigest()[:16]


def _token(channel: AlertChannel, salt: str) -> str:
    return signing.dumps({"c": channel.pk, "t": _digest(channel)}, salt=salt, compress=True)


def _channel(token: str, salt: str, max_age: int | None) -> AlertChannel | None:
    try:
        value = signing.loads(token[:500], salt=salt, max_age=max_age)
    except signing.BadSignature:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("c"), int):
        return None
    channel = AlertChannel.objects.filter(pk=value["c"]).first()
    if channel is None or value.get("t") != _digest(channel):
        return None
    return channel


def unsubscribe_url(channel: AlertChannel) -> str:
    token = _token(channel, "alerts.unsubscribe")
    return settings.PORTAL_URL + reverse("alerts-unsubscribe", args=[token])


def verify_url(channel: AlertChannel) -> str:
    token = _token(channel, "alerts.verify")
    return settings.PORTAL_URL + reverse("alerts-verify", args=[token])


def unsubscribing(token: str) -> AlertChannel | None:
    return _channel(token, "alerts.unsubscribe", None)


def verifying(token: str) -> AlertChannel | None:
    return _channel(token, "alerts.verify", VERIFY_MAX_AGE_S)
