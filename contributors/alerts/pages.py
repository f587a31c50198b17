"""/alerts/: a contributor's channels, what each one takes, thresholds and quiet hours, and the
history of what was sent; plus the signed links of emails (verify, unsubscribe) that work
without signing in."""

import zoneinfo
from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import IntegrityError, transaction
from django.db.models import Prefetch
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from contributors.alerts import delivery, links, targets
from contributors.models import (
    DEFAULT_EVENTS,
    AlertChannel,
    AlertDelivery,
    AlertEvent,
    AlertPreferences,
    EventKind,
)

HISTORY_SIZE = 100
MAX_TARGET = AlertChannel._meta.get_field("target").max_length
CHOOSABLE = [(k, label) for k, label in EventKind.choices if k != EventKind.TEST]
# Common zones first in the picker; any IANA name is accepted.
ZONES = sorted(zoneinfo.available_timezones())


class PreferencesForm(forms.ModelForm):
    class Meta:
        model = AlertPreferences
        fields = [
            "time_zone", "offline_after_min", "temperature_c", "temperature_for_min",
            "quiet_start", "quiet_end",
        ]  # fmt: skip
        widgets = {
            "quiet_start": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "quiet_end": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "time_zone": forms.TextInput(attrs={"list": "time-zones", "maxlength": 64}),
        }

    def clean_offline_after_min(self):
        return _within(self.cleaned_data["offline_after_min"], 2, 1440)

    def clean_temperature_c(self):
        return _within(self.cleaned_data["temperature_c"], 40, 120)

    def clean_temperature_for_min(self):
        return _within(self.cleaned_data["temperature_for_min"], 1, 240)

    def clean(self):
        data = super().clean()
        if (data.get("quiet_start") is None) != (data.get("quiet_end") is None):
            raise forms.ValidationError("Quiet hours need both a start and an end (or neither).")
        return data


def _within(value: int, low: int, high: int) -> int:
    if value is None or not low <= value <= high:
        raise forms.ValidationError(f"Between {low} and {high}.")
    return value


def _prefs(user) -> AlertPreferences:
    return AlertPreferences.objects.filter(contributor=user).first() or AlertPreferences(
        contributor=user
    )


@require_GET
@login_required
def alerts_page(request):
    return _page(request)


def _page(request, secret: dict | None = None, prefs_form: PreferencesForm | None = None):
    user = request.user
    prefs = _prefs(user)
    channels = list(AlertChannel.objects.filter(contributor=user))
    history = list(
        AlertEvent.objects.filter(contributor=user)
        .exclude(kind=EventKind.TEST, deliveries__isnull=True)
        .prefetch_related(
            Prefetch(
                "deliveries",
                queryset=AlertDelivery.objects.select_related("channel").order_by("pk"),
            )
        )[:HISTORY_SIZE]
    )
    response = render(
        request,
        "contributors/alerts.html",
        {
            "channels": channels,
            "event_choices": CHOOSABLE,
            "prefs_form": prefs_form or PreferencesForm(instance=prefs),
            "quiet": delivery.quiet_hours_text(prefs),
            "zones": ZONES,
            "history": history,
            "secret": secret,
            "apprise_schemes": settings.ALERT_APPRISE_SCHEMES,
            "max_channels": settings.ALERT_MAX_CHANNELS,
        },
    )
    if secret is not None:
        add_never_cache_headers(response)
    return response


@require_POST
@login_required
def add_channel(request):
    kind = request.POST.get("kind", "")
    target = request.POST.get("target", "")
    label = request.POST.get("label", "").strip()[:80]
    if kind not in AlertChannel.Kind.values:
        messages.error(request, "Choose email, chat or push (Apprise), or webhook.")
        return redirect("alerts")
    if len(target.strip()) > MAX_TARGET:
        # Refused, not cut short: a shortened URL or address would be another one.
        messages.error(request, f"An address or URL is at most {MAX_TARGET} characters.")
        return redirect("alerts")
    if AlertChannel.objects.filter(contributor=request.user).count() >= settings.ALERT_MAX_CHANNELS:
        messages.error(request, f"At most {settings.ALERT_MAX_CHANNELS} channels; remove one.")
        return redirect("alerts")
    try:
        target = targets.check(kind, target)
    except targets.TargetRefused as exc:
        messages.error(request, str(exc))
        return redirect("alerts")
    refused = _test_refused(request.user, kind, target)
    if refused and kind == AlertChannel.Kind.EMAIL:
        # Adding an address sends it a message: the same limits as the test button.
        messages.error(request, refused)
        return redirect("alerts")
    channel = AlertChannel(
        contributor=request.user, kind=kind, target=target, label=label, events=DEFAULT_EVENTS
    )
    if kind == AlertChannel.Kind.WEBHOOK:
        channel.secret = AlertChannel.new_secret()
    try:
        with transaction.atomic():  # a savepoint: the refusal leaves the request's work usable
            channel.save()
    except IntegrityError:
        messages.error(request, "You have this channel already.")
        return redirect("alerts")
    if kind == AlertChannel.Kind.EMAIL:
        delivery.send_test(channel)
        messages.success(request, f"We sent a link to {target}: open it to confirm the address.")
    else:
        messages.success(request, "Channel added. Send a test to verify it; alerts follow then.")
    if kind == AlertChannel.Kind.WEBHOOK:
        return _page(request, {"channel": channel, "value": channel.secret})
    return redirect("alerts")


def _test_refused(user, kind: str, target: str) -> str:
    """Why a test message may not go now, or "": ALERT_TESTS_PER_HOUR per contributor, and
    ALERT_EMAIL_TESTS_PER_DAY per email address whoever asks (an address is nobody's to
    flood: adding, removing and adding it again counts too)."""
    now = timezone.now()
    tests = AlertEvent.objects.filter(kind=EventKind.TEST)
    if (
        tests.filter(contributor=user, created_at__gte=now - timedelta(hours=1)).count()
        >= settings.ALERT_TESTS_PER_HOUR
    ):
        return f"At most {settings.ALERT_TESTS_PER_HOUR} test messages an hour."
    if kind == AlertChannel.Kind.EMAIL:
        # Test events keep the address they went to, so removing a channel resets nothing.
        to_address = tests.filter(
            created_at__gte=now - timedelta(days=1), data__address=target.lower()
        ).count()
        if to_address >= settings.ALERT_EMAIL_TESTS_PER_DAY:
            return (
                f"This address got {settings.ALERT_EMAIL_TESTS_PER_DAY} messages from us in "
                "the last day; try again tomorrow."
            )
    return ""


def _own(request, pk: int) -> AlertChannel:
    return get_object_or_404(AlertChannel, pk=pk, contributor=request.user)


@require_POST
@login_required
def channel_settings(request, pk: int):
    channel = _own(request, pk)
    chosen = [k for k, _ in CHOOSABLE if request.POST.get(f"event_{k}") == "on"]
    channel.events = chosen
    channel.enabled = request.POST.get("enabled") == "on"
    channel.save(update_fields=["events", "enabled"])
    messages.success(request, f"Saved: {channel.display_target} takes {len(chosen)} kinds.")
    return redirect("alerts")


@require_POST
@login_required
def test_channel(request, pk: int):
    channel = _own(request, pk)
    refused = _test_refused(request.user, channel.kind, channel.target)
    if refused:
        messages.error(request, refused)
        return redirect("alerts")
    delivery.send_test(channel)
    messages.success(request, "Test sent; its result shows in the history below.")
    return redirect("alerts")


@require_POST
@login_required
def rotate_secret(request, pk: int):
    channel = _own(request, pk)
    if channel.kind != AlertChannel.Kind.WEBHOOK:
        messages.error(request, "Only webhooks have a secret.")
        return redirect("alerts")
    channel.secret = AlertChannel.new_secret()
    channel.save(update_fields=["secret"])
    return _page(request, {"channel": channel, "value": channel.secret})


@require_POST
@login_required
def delete_channel(request, pk: int):
    channel = _own(request, pk)
    channel.delete()
    messages.success(request, f"Removed {channel.display_target}.")
    return redirect("alerts")


@require_POST
@login_required
def save_preferences(request):
    form = PreferencesForm(request.POST, instance=_prefs(request.user))
    if not form.is_valid():
        messages.error(request, "Some preferences were not saved; see the form.")
        response = _page(request, prefs_form=form)
        response.status_code = 400
        return response
    form.instance.contributor = request.user
    form.save()
    messages.success(request, "Alert preferences saved.")
    return redirect("alerts")


# --- signed links, no sign-in ---------------------------------------------------------------


@csrf_exempt  # the signed token is the credential; mail clients post one-click unsubscribes
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token: str):
    channel = links.unsubscribing(token)
    if channel is None:
        return render(request, "contributors/alerts_link.html", {"bad": True}, status=404)
    if request.method == "POST":
        AlertChannel.objects.filter(pk=channel.pk, unsubscribed_at__isnull=True).update(
            unsubscribed_at=timezone.now()
        )
        if request.POST.get("List-Unsubscribe") == "One-Click":
            return HttpResponse("Unsubscribed.\n", content_type="text/plain")
        return render(
            request, "contributors/alerts_link.html", {"done": "unsubscribed", "channel": channel}
        )
    return render(
        request, "contributors/alerts_link.html", {"ask": "unsubscribe", "channel": channel}
    )


@require_http_methods(["GET", "POST"])
def verify(request, token: str):
    channel = links.verifying(token)
    if channel is None:
        return render(request, "contributors/alerts_link.html", {"bad": True}, status=404)
    if request.method == "POST":
        AlertChannel.objects.filter(pk=channel.pk).update(
            verified_at=timezone.now(), unsubscribed_at=None
        )
        return render(
            request, "contributors/alerts_link.html", {"done": "verified", "channel": channel}
        )
    return render(request, "contributors/alerts_link.html", {"ask": "verify", "channel": channel})
