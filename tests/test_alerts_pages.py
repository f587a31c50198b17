"""/alerts/ through Django's test client: channels, what each takes, preferences, history and
the signed email links; the ways a contributor could misuse it (other people's channels, HTML,
too many channels or tests, malformed posts); and what network admins see in Django admin.

Emails land in the locmem outbox; delivery tasks go to a parked queue and are sent here with
`delivery.deliver`, as a worker would.
"""

import html
import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.utils import timezone

from contributors.alerts import delivery, evaluate
from contributors.models import (
    DEFAULT_EVENTS,
    AlertChannel,
    AlertDelivery,
    AlertEvent,
    AlertPreferences,
    EventKind,
)
from tests.support.agent_api import Agent, batch, enroll, h100, sample
from tests.support.siwe import signed_in

pytestmark = pytest.mark.django_db

PAGE = "/alerts/"
ADD = "/alerts/channels"
PREFERENCES = "/alerts/preferences"


@pytest.fixture(autouse=True)
def _mailbox(settings, parking_queue):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    # Webhook targets on 127.0.0.1 resolve without a network; production refuses them.
    settings.ALERT_ALLOW_PRIVATE_TARGETS = True
    settings.ALERT_MAX_CHANNELS = 10
    settings.ALERT_TESTS_PER_HOUR = 10
    mail.outbox = []


def channel(owner, kind="email", target="alice@example.com", **fields) -> AlertChannel:
    """A channel as if added and verified on the page."""
    fields = {"verified_at": timezone.now(), "events": list(DEFAULT_EVENTS), **fields}
    if kind == AlertChannel.Kind.WEBHOOK:
        fields.setdefault("secret", AlertChannel.new_secret())
    return AlertChannel.objects.create(contributor=owner, kind=kind, target=target, **fields)


def send_pending(now=None) -> None:
    """What a worker does with the queued deliveries at `now`: send each one."""
    for pk in AlertDelivery.objects.filter(status="pending").values_list("pk", flat=True):
        assert delivery.deliver(pk, now) == "sent"


def text(response) -> str:
    return response.content.decode()


def offline_machine(owner, hostname="alice-rig"):
    """A machine of `owner` reports once, then stays silent past the offline threshold: the
    evaluator raises its `offline` event (at a `now` a quarter of an hour ahead)."""
    agent = Agent(enroll(owner, [h100(hostname)], hostname=hostname))
    body = batch([sample(h100(hostname)["uuid"])])
    assert agent.send(body).status_code == 202
    from contributors.telemetry import store

    store.ingest(agent.batch_row(body["batch_id"]).pk)
    now = timezone.now()
    evaluate.run(now + timedelta(minutes=2))
    evaluate.run(now + timedelta(minutes=15))
    return now + timedelta(minutes=15)


# --- the page ----------------------------------------------------------------------------------


def test_the_alerts_page_needs_a_sign_in():
    """Signed out, /alerts/ and its forms send you to sign in and change nothing."""
    from django.test import Client

    response = Client().get(PAGE)
    assert response.status_code == 302
    assert response["Location"] == "/signin/?next=/alerts/"
    refused = Client().post(ADD, {"kind": "email", "target": "x@example.com"})
    assert refused.status_code == 302 and refused["Location"].startswith("/signin/")
    assert not AlertChannel.objects.exists()


def test_the_page_shows_channels_preferences_and_history_with_delivery_status(alice):
    """Channels with their state, the preference form, and each event with what became of its
    deliveries: delivered, or failed with the error."""
    mailbox = channel(alice, label="my inbox")
    hook = channel(alice, "webhook", "https://127.0.0.1/hook", verified_at=None, label="ops server")
    event = AlertEvent.objects.create(
        contributor=alice, kind=EventKind.OFFLINE, key="k1", title="rig-7 is offline", body="…"
    )
    AlertDelivery.objects.create(
        event=event, channel=mailbox, status="sent", attempts=1, sent_at=timezone.now()
    )
    AlertDelivery.objects.create(
        event=event, channel=hook, status="failed", attempts=6,
        last_error="HTTP 502 from the webhook.",
    )  # fmt: skip

    page = text(signed_in(alice).get(PAGE))
    assert "alice@example.com" in page and "my inbox" in page
    assert "https://127.0.0.1/…" in page and "ops server" in page
    assert "not verified" in page and ">verified<" in page
    for field in ("time_zone", "offline_after_min", "temperature_c", "temperature_for_min",
                  "quiet_start", "quiet_end"):  # fmt: skip
        assert f'name="{field}"' in page
    assert "rig-7 is offline" in page
    assert '<div class="delivery" data-status="sent">' in page
    assert '<div class="delivery" data-status="failed">' in page
    assert "HTTP 502 from the webhook." in page
    assert "6 tries" in page


# --- adding channels -------------------------------------------------------------------------


def test_an_email_channel_is_verified_by_the_link_it_is_sent(alice):
    """Adding an address sends it a message with a /alerts/verify/ link; the channel says "not
    verified" (and takes no alerts) until the link is posted; a GET only asks."""
    client = signed_in(alice)
    response = client.post(ADD, {"kind": "email", "target": "alice@example.com"}, follow=True)
    assert "We sent a link to alice@example.com" in text(response)
    added = AlertChannel.objects.get(contributor=alice)
    assert added.verified_at is None and not added.secret
    send_pending()
    (message,) = mail.outbox
    assert message.to == ["alice@example.com"]
    (link,) = re.findall(r"https?://\S+/alerts/verify/\S+/", message.body)
    path = urlsplit(link).path
    assert "not verified" in text(client.get(PAGE))

    offline_machine(alice)
    assert not AlertDelivery.objects.filter(event__kind=EventKind.OFFLINE).exists()

    asked = text(client.get(path))
    assert "Confirm this address" in asked
    added.refresh_from_db()
    assert added.verified_at is None
    confirmed = client.post(path)
    assert "Address confirmed" in text(confirmed)
    added.refresh_from_db()
    assert added.verified_at is not None
    page = text(client.get(PAGE))
    assert "not verified" not in page and ">verified<" in page


def test_a_verify_link_for_another_address_or_altered_does_not_work(alice):
    """A link is bound to its address: changing the token, or the channel's address, breaks
    it (404, nothing verified)."""
    client = signed_in(alice)
    client.post(ADD, {"kind": "email", "target": "alice@example.com"})
    send_pending()
    (link,) = re.findall(r"https?://\S+/alerts/verify/\S+/", mail.outbox[0].body)
    path = urlsplit(link).path
    assert client.post(path[:-3] + "xx/").status_code == 404
    AlertChannel.objects.filter(contributor=alice).update(target="mallory@example.com")
    assert client.post(path).status_code == 404
    assert AlertChannel.objects.get(contributor=alice).verified_at is None


def test_a_webhook_secret_is_shown_once(alice):
    """The signing secret is in the answer to adding the webhook (not cached), never on a later
    page; a new secret replaces it, shown once as well."""
    client = signed_in(alice)
    added = client.post(ADD, {"kind": "webhook", "target": "https://127.0.0.1:8443/hook"})
    assert added.status_code == 200
    secret = AlertChannel.objects.get(contributor=alice).secret
    assert secret.startswith("whsec_")
    assert text(added).count(secret) == 1
    assert "no-store" in added["Cache-Control"]
    assert secret not in text(client.get(PAGE))

    hook = AlertChannel.objects.get(contributor=alice)
    rotated = client.post(f"/alerts/channels/{hook.pk}/secret")
    hook.refresh_from_db()
    assert hook.secret != secret
    assert text(rotated).count(hook.secret) == 1 and secret not in text(rotated)
    assert hook.secret not in text(client.get(PAGE))


# --- preferences -------------------------------------------------------------------------------


def test_valid_preferences_are_saved(alice):
    client = signed_in(alice)
    response = client.post(
        PREFERENCES,
        {
            "time_zone": "Europe/Berlin",
            "offline_after_min": "15",
            "temperature_c": "80",
            "temperature_for_min": "3",
            "quiet_start": "22:00",
            "quiet_end": "07:00",
        },
        follow=True,
    )
    assert response.status_code == 200
    assert "Alert preferences saved." in text(response)
    prefs = AlertPreferences.objects.get(contributor=alice)
    assert (prefs.time_zone, prefs.offline_after_min, prefs.temperature_c) == (
        "Europe/Berlin", 15, 80
    )  # fmt: skip
    assert prefs.temperature_for_min == 3
    assert (prefs.quiet_start.hour, prefs.quiet_end.hour) == (22, 7)
    assert "22:00 to 07:00 Europe/Berlin" in text(response)


VALID = {
    "time_zone": "Asia/Tokyo",
    "offline_after_min": "20",
    "temperature_c": "90",
    "temperature_for_min": "10",
    "quiet_start": "",
    "quiet_end": "",
}


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"time_zone": "Mars/Olympus_Mons"}, "is not an IANA time zone"),
        ({"time_zone": "x" * 5000}, "at most 64 characters"),
        ({"offline_after_min": "1"}, "Between 2 and 1440."),
        ({"offline_after_min": "5000"}, "Between 2 and 1440."),
        ({"offline_after_min": "-3"}, "greater than or equal to 0"),
        ({"offline_after_min": "ten"}, "Enter a whole number."),
        ({"temperature_c": "39"}, "Between 40 and 120."),
        ({"temperature_c": "121"}, "Between 40 and 120."),
        ({"temperature_for_min": "0"}, "Between 1 and 240."),
        ({"quiet_start": "22:00"}, "Quiet hours need both a start and an end"),
        ({"quiet_end": "06:00"}, "Quiet hours need both a start and an end"),
        ({"quiet_start": "25:99", "quiet_end": "06:00"}, "Enter a valid time."),
    ],
)
def test_invalid_preferences_are_a_400_that_saves_nothing(alice, change, says):
    """Each bad value answers 400 with the page, a message and the field's error; the stored
    preferences stay as they were."""
    AlertPreferences.objects.create(contributor=alice, time_zone="UTC", offline_after_min=10)
    response = signed_in(alice).post(PREFERENCES, {**VALID, **change})
    assert response.status_code == 400
    page = html.unescape(text(response))
    assert "Some preferences were not saved" in page
    assert says in page
    prefs = AlertPreferences.objects.get(contributor=alice)
    assert (prefs.time_zone, prefs.offline_after_min, prefs.temperature_c) == ("UTC", 10, 85)
    assert prefs.quiet_start is None and prefs.quiet_end is None


# --- what each channel takes -------------------------------------------------------------------


def test_event_choices_are_saved_per_channel_and_a_paused_channel_gets_nothing(alice):
    """One channel takes only offline alerts, one only digests, one is paused: an offline
    alert goes to the first alone."""
    client = signed_in(alice)
    offline_only = channel(alice, target="ops@example.com")
    digest_only = channel(alice, target="me@example.com")
    paused = channel(alice, target="old@example.com")
    for target, form in (
        (offline_only, {"event_offline": "on", "enabled": "on"}),
        (digest_only, {"event_digest": "on", "enabled": "on"}),
        (paused, {"event_offline": "on"}),
    ):
        response = client.post(f"/alerts/channels/{target.pk}/settings", form)
        assert response.status_code == 302
    for row, events, enabled in (
        (offline_only, ["offline"], True),
        (digest_only, ["digest"], True),
        (paused, ["offline"], False),
    ):
        row.refresh_from_db()
        assert (row.events, row.enabled) == (events, enabled)
    page = text(client.get(PAGE))
    assert "paused" in page
    assert page.count('name="event_offline" checked') == 2
    assert page.count('name="event_digest" checked') == 1

    later = offline_machine(alice)
    (sent,) = AlertDelivery.objects.filter(event__kind=EventKind.OFFLINE)
    assert sent.channel == offline_only
    send_pending(later)
    # After ALERT_DIGEST_HOUR the digest channel also gets today's digest: that is its choice.
    digests = [m.to for m in mail.outbox if "OMNIT on" in m.subject]
    others = [(m.to, m.subject) for m in mail.outbox if "OMNIT on" not in m.subject]
    assert digests in ([], [["me@example.com"]])
    ((to, subject),) = others
    assert to == ["ops@example.com"] and "offline" in subject


# --- misuse ------------------------------------------------------------------------------------


def test_bob_cannot_see_edit_test_or_delete_alices_channels(alice, bob):
    """Every channel URL of alice's answers bob with 404 and changes nothing; his page does not
    show her channel."""
    hook = channel(alice, "webhook", "https://127.0.0.1/hook", label="alice-ops-label")
    before = (hook.events, hook.enabled, hook.secret)
    assert "alice-ops-label" in text(signed_in(alice).get(PAGE))
    client = signed_in(bob)
    assert "alice-ops-label" not in text(client.get(PAGE))
    for action, form in (
        ("settings", {"enabled": "on"}),
        ("test", {}),
        ("secret", {}),
        ("delete", {}),
    ):
        response = client.post(f"/alerts/channels/{hook.pk}/{action}", form)
        assert response.status_code == 404, action
        assert hook.secret not in text(response)
    hook.refresh_from_db()
    assert (hook.events, hook.enabled, hook.secret) == before
    assert not AlertEvent.objects.filter(kind=EventKind.TEST).exists()


def test_html_in_labels_targets_and_alerts_is_escaped(alice):
    """A label, a target and a machine name holding markup are shown as text."""
    client = signed_in(alice)
    script = "<script>alert(1)</script>"
    client.post(ADD, {"kind": "email", "target": "alice@example.com", "label": script})
    channel(alice, "webhook", f'https://x"><img src=y onerror=alert(2)>/{script}', label="w")
    offline_machine(alice, hostname="<img src=z onerror=alert(3)>")
    page = text(client.get(PAGE))
    assert script not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the label
    assert "<img src=y" not in page and "<img src=z" not in page
    assert "&lt;img src=y onerror=alert(2)&gt;/…" in page  # the webhook's host
    assert "&lt;img src=z onerror=alert(3)&gt; is offline" in page  # the alert's title
    refused = text(client.post(ADD, {"kind": "email", "target": "<b>x</b>"}, follow=True))
    assert "<b>x</b>" not in refused and "&lt;b&gt;x&lt;/b&gt;" in refused  # its message


def test_more_than_the_maximum_of_channels_is_refused(alice, settings):
    settings.ALERT_MAX_CHANNELS = 3
    client = signed_in(alice)
    for n in range(3):
        client.post(ADD, {"kind": "webhook", "target": f"https://127.0.0.1/hook-{n}"})
    assert 'id="add-channel"' not in text(client.get(PAGE))
    refused = client.post(
        ADD, {"kind": "webhook", "target": "https://127.0.0.1/one-more"}, follow=True
    )
    assert "At most 3 channels; remove one." in text(refused)
    assert AlertChannel.objects.filter(contributor=alice).count() == 3


def test_the_same_channel_twice_is_refused_with_a_message(alice):
    """Adding an address a second time says so and keeps one channel (and one secret)."""
    client = signed_in(alice)
    client.post(ADD, {"kind": "webhook", "target": "https://127.0.0.1/hook"})
    secret = AlertChannel.objects.get(contributor=alice).secret
    again = client.post(ADD, {"kind": "webhook", "target": "https://127.0.0.1/hook"}, follow=True)
    assert again.status_code == 200
    assert "You have this channel already." in text(again)
    assert list(AlertChannel.objects.values_list("secret", flat=True)) == [secret]


def test_test_messages_are_limited_per_hour(alice, settings):
    settings.ALERT_TESTS_PER_HOUR = 2
    hook = channel(alice, "webhook", "https://127.0.0.1/hook")
    client = signed_in(alice)
    answers = [client.post(f"/alerts/channels/{hook.pk}/test", follow=True) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert "Test sent" in text(answers[1])
    assert "At most 2 test messages an hour." in text(answers[2])
    assert AlertEvent.objects.filter(contributor=alice, kind=EventKind.TEST).count() == 2


@pytest.mark.parametrize(
    ("url", "form"),
    [
        (ADD, {}),
        (ADD, {"kind": "email"}),
        (ADD, {"kind": "sms", "target": "+15555550100"}),
        (ADD, {"kind": "email", "target": "not an address"}),
        (ADD, {"kind": "email", "target": "a@example.com", "label": "x" * 100_000}),
        (ADD, {"kind": "webhook", "target": "x" * 100_000}),
        (ADD, {"kind": "webhook", "target": "https://[::1"}),
        (ADD, {"kind": "webhook", "target": "https://user:pw@127.0.0.1/"}),
        (ADD, {"kind": "webhook", "target": "ftp://127.0.0.1/"}),
        (ADD, {"kind": "apprise", "target": "discord://"}),
        (ADD, {"kind": "apprise", "target": "file:///etc/passwd"}),
        (ADD, {"kind": ["email", "webhook"], "target": ["a@example.com", "b@example.com"]}),
        (PREFERENCES, {}),
        (PREFERENCES, {"offline_after_min": "9" * 50, "temperature_c": "1e9"}),
        (PREFERENCES, {"quiet_start": "x" * 100_000, "quiet_end": "\x00"}),
        ("/alerts/channels/{pk}/settings", {"event_offline": "x" * 100_000}),
        ("/alerts/channels/{pk}/secret", {}),  # not a webhook
        ("/alerts/channels/99999999999999999999999/settings", {}),
        ("/alerts/channels/99999999999999999999999/delete", {}),
        ("/alerts/verify/" + "a" * 5000 + "/", {}),
        ("/alerts/unsubscribe/not-a-token/", {"List-Unsubscribe": "One-Click"}),
    ],
)
def test_malformed_posts_never_answer_5xx(alice, url, form):
    """Missing, wrong, huge or repeated fields and impossible ids get a 4xx or a redirect."""
    mine = channel(alice)
    response = signed_in(alice).post(url.format(pk=mine.pk), form)
    assert response.status_code < 500, response.content[:300]


# --- Django admin ------------------------------------------------------------------------------


def test_admin_lists_deliveries_and_failures_and_retries_a_failed_one(alice, staff, parking_queue):
    """The deliveries changelist shows every delivery, the status filter shows the failed ones
    with their error, and the retry action queues a failed delivery again from the start."""
    mailbox = channel(alice)
    ok = AlertEvent.objects.create(
        contributor=alice, kind=EventKind.ONLINE, key="a", title="rig-1 is back online", body="…"
    )
    bad = AlertEvent.objects.create(
        contributor=alice, kind=EventKind.OFFLINE, key="b", title="rig-2 is offline", body="…"
    )
    AlertDelivery.objects.create(event=ok, channel=mailbox, status="sent", attempts=1)
    failed = AlertDelivery.objects.create(
        event=bad, channel=mailbox, status="failed", attempts=6,
        last_error="SMTPRecipientsRefused: mailbox unavailable",
    )  # fmt: skip
    url = "/admin/contributors/alertdelivery/"

    everything = text(staff.get(url))
    assert "rig-1 is back online" in everything and "rig-2 is offline" in everything
    failures = staff.get(url, {"status__exact": "failed"})
    assert failures.status_code == 200
    assert "rig-2 is offline" in text(failures) and "rig-1 is back online" not in text(failures)
    assert "SMTPRecipientsRefused: mailbox unavailable" in text(failures)

    parking_queue()  # nothing queued before the action
    response = staff.post(
        url, {"action": "retry_deliveries", "_selected_action": [failed.pk]}, follow=True
    )
    assert "1 delivery(ies) queued again." in text(response)
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == ("pending", 0)
    assert parking_queue() == 1  # its task was queued
    assert delivery.deliver(failed.pk) == "sent"
    assert [m.subject for m in mail.outbox] == ["rig-2 is offline"]


def test_admin_never_shows_a_webhook_secret_or_a_full_apprise_target(alice, staff):
    hook = channel(alice, "webhook", "https://127.0.0.1/hooks/T0KEN-IN-PATH")
    push = channel(alice, "apprise", "discord://4242424242/s3cr3t-w3bh00k-t0k3n")
    changelist = text(staff.get("/admin/contributors/alertchannel/"))
    pages = [changelist] + [
        text(staff.get(f"/admin/contributors/alertchannel/{c.pk}/change/")) for c in (hook, push)
    ]
    for page in pages:
        assert hook.secret not in page
        assert "T0KEN-IN-PATH" not in page
        assert "s3cr3t-w3bh00k-t0k3n" not in page
    assert "discord://…" in changelist
    assert "https://127.0.0.1/…" in changelist


@pytest.mark.parametrize(
    "target",
    [
        "tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PAL/987654321",
        "pover://u4xyzuserkey@a7appt0kenpushover",
        "ntfy://my-s3cret-topic",
        "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ",
    ],
)
def test_no_page_shows_the_tokens_of_an_apprise_url(alice, staff, target):
    """Wherever an Apprise service keeps its token (a bot id and key, a user key, a topic, a
    workspace path), the page and the admin show only the scheme and the label."""
    push = channel(alice, "apprise", target)
    secrets = [part for part in re.split(r"[:/@]+", target.split("://", 1)[1]) if part]
    pages = [
        text(signed_in(alice).get("/alerts/")),
        text(staff.get("/admin/contributors/alertchannel/")),
        text(staff.get(f"/admin/contributors/alertchannel/{push.pk}/change/")),
    ]
    for page in pages:
        for secret in secrets:
            assert secret not in page
    assert f"{target.split('://')[0]}://…" in pages[0]
