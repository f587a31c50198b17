"""Alert deliveries end to end, against real receivers: an SMTP server (aiosmtpd), loopback HTTP
servers standing for webhooks and Apprise targets, and real Celery worker processes that are
SIGKILLed mid-delivery.

Contributors act through the /alerts/ pages (Django's test client); alerts come from the
evaluator (`contributors.alerts.evaluate.run`, given a clock 15 minutes ahead so that an agent
that reported once is offline by then); deliveries are queued to a queue of the test's own and
run either by calling the `contributors.deliver_alert` task, by `delivery.deliver` with the same
clock, or by worker processes (section 5, where workers keep the real clock, so a machine's last
report is set 20 minutes back instead). Nothing of the portal is mocked.

1. email: a verification link, an alert with one-click unsubscribe, then silence;
2. signed webhooks: the secret shown once signs every request; a rotated secret no longer does;
3. Apprise: a json:// target receives the test and the alerts;
4. attacks and failures: private targets, redirects, other contributors, forged links,
   oversized targets, a receiver that keeps failing;
5. exactly once across a SIGKILLed worker (see that section for what "exactly once" means);
6. quiet hours hold deliveries until they end, in the contributor's time zone.
"""

import re
import time as clock_time
import zoneinfo
from datetime import datetime, time, timedelta

import pytest
from django.core import signing
from django.db import transaction
from django.test import Client
from django.utils import timezone

from contributors.alerts import delivery, evaluate
from contributors.models import DEFAULT_EVENTS, AlertChannel, AlertDelivery, AlertEvent, Node
from contributors.tasks import deliver_alert
from tests.support.agent_api import Agent, batch, enroll, h100, sample, send_and_ingest
from tests.support.alert_receivers import (
    Receiver,
    SmtpSink,
    queued_deliveries,
    signature_ok,
    text_of,
)
from tests.support.brokers import producer_using, purge_queues, unique_queue
from tests.support.processes import portal_env, sigkill_tree, start_worker, wait_until
from tests.support.siwe import signed_in

ADD = "/alerts/channels"
PAGE = "/alerts/"
PORTAL_URL = "https://portal.example"
MAILBOX = "alice@example.com"


# --- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture
def outbox():
    """This process's enqueues go to a queue of this test's own that no worker reads; the
    test takes the delivery tasks from it and runs them itself."""
    queue = unique_queue("alerts")
    with producer_using(default_queue=queue):
        yield queue
    purge_queues(queue)


@pytest.fixture
def smtp(settings):
    """A real SMTP server, and the portal's email settings pointing at it."""
    sink = SmtpSink()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = sink.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.PORTAL_URL = PORTAL_URL
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def receivers():
    """Start loopback HTTP receivers (`receivers(**options)`); all stop at teardown."""
    started: list[Receiver] = []

    def start(**options) -> Receiver:
        receiver = Receiver(**options).start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


@pytest.fixture
def private_targets(settings):
    """The loopback receivers stand for public servers: private targets are allowed (the
    attack tests switch this off)."""
    settings.ALERT_ALLOW_PRIVATE_TARGETS = True


def run_queued(queue: str) -> list[str]:
    """Run the queued delivery tasks as a worker would (in this process); their outcomes."""
    return [deliver_alert(pk) for pk in queued_deliveries(queue)]


def shown_secret(response) -> str:
    """The signing secret the page shows once, after adding a webhook or rotating its secret."""
    assert response.status_code == 200, response.status_code
    found = re.search(r'id="webhook-secret">([^<]+)</pre>', response.content.decode())
    assert found, "no signing secret on the page"
    return found.group(1)


def page_messages(response) -> str:
    return " ".join(re.findall(r'<li class="message[^"]*">(.*?)</li>', response.content.decode()))


def press_test(client: Client, channel: AlertChannel, capture) -> None:
    """The channel's "Send a test" button; the task it queues after commit reaches the queue."""
    with capture(execute=True):
        response = client.post(f"/alerts/channels/{channel.pk}/test")
    assert response.status_code == 302


def take_only(client: Client, channel: AlertChannel, kinds: list[str]) -> None:
    """Subscribe the channel to these kinds only (so that, say, an "epoch at risk" warning the
    clock happens to fall on goes elsewhere and counts stay exact)."""
    data = {f"event_{kind}": "on" for kind in kinds} | {"enabled": "on"}
    response = client.post(f"/alerts/channels/{channel.pk}/settings", data)
    assert response.status_code == 302
    channel.refresh_from_db()
    assert sorted(channel.events) == sorted(kinds)


def add_verified_webhook(client, receiver, capture, outbox, path="/hook") -> AlertChannel:
    secret = shown_secret(client.post(ADD, {"kind": "webhook", "target": receiver.url + path}))
    channel = AlertChannel.objects.get(target=receiver.url + path)
    receiver.secret = secret
    press_test(client, channel, capture)
    assert run_queued(outbox) == ["sent"]
    channel.refresh_from_db()
    assert channel.verified_at is not None
    return channel


def reporting_agent(owner, capture) -> Agent:
    """A machine with one H100 that enrolled and reported once, through the agent API."""
    gpu = h100("alerts")
    agent = Agent(enroll(owner, [gpu]))
    send_and_ingest(agent, batch([sample(gpu["uuid"])]), capture)
    return agent


def report_again(agent: Agent, capture) -> None:
    uuid = agent.node.gpus.values_list("uuid", flat=True).get()
    send_and_ingest(agent, batch([sample(uuid)]), capture)


def offline_delivery(owner, channel) -> AlertDelivery:
    event = AlertEvent.objects.get(contributor=owner, kind="offline")
    return event.deliveries.get(channel=channel)


def later() -> datetime:
    """A clock past the offline threshold (10 min by default) of an agent that reports now."""
    return timezone.now() + timedelta(minutes=15)


def csrf_token(response) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.content.decode())[1]


def path_of(url: str) -> str:
    assert url.startswith(PORTAL_URL + "/"), url
    return url[len(PORTAL_URL) :]


# --- 1. email through a real SMTP server -------------------------------------------------------


@pytest.mark.django_db
def test_email_is_verified_by_its_link_alerted_and_unsubscribed_in_one_click(
    alice, smtp, outbox, django_capture_on_commit_callbacks
):
    """Adding an address mails it a confirmation link; a GET of the link confirms nothing, the
    POST of its form does (no sign-in needed); alerts then arrive with List-Unsubscribe
    headers; the one-click POST a mail client sends stops them, even one already queued."""
    capture = django_capture_on_commit_callbacks
    client = signed_in(alice)
    with capture(execute=True):
        response = client.post(ADD, {"kind": "email", "target": f"  {MAILBOX} ", "label": "me"})
    assert response.status_code == 302
    channel = AlertChannel.objects.get(contributor=alice)
    assert (channel.kind, channel.target, channel.verified_at) == ("email", MAILBOX, None)

    assert run_queued(outbox) == ["sent"]
    [mail] = smtp.received()
    assert smtp.recipients == [[MAILBOX]]
    assert mail["To"] == MAILBOX
    assert mail["Subject"] == "Confirm your OmniTensor alerts"
    delivery_id = mail["X-OmniTensor-Delivery"]
    assert mail["Message-ID"] == f"<alert-{delivery_id}@localhost>"
    link = re.search(rf"{re.escape(PORTAL_URL)}/alerts/verify/\S+/", text_of(mail))
    assert link, text_of(mail)
    verify_path = path_of(link[0])

    # A link scanner's GET confirms nothing; the person's POST (CSRF-checked form) does.
    anonymous = Client(enforce_csrf_checks=True)
    asked = anonymous.get(verify_path)
    assert asked.status_code == 200
    assert "Confirm this address" in asked.content.decode()
    channel.refresh_from_db()
    assert channel.verified_at is None
    done = anonymous.post(verify_path, {"csrfmiddlewaretoken": csrf_token(asked)})
    assert done.status_code == 200
    assert "Address confirmed" in done.content.decode()
    channel.refresh_from_db()
    assert channel.verified_at is not None
    take_only(client, channel, ["offline", "online"])

    # The agent stops reporting: the offline alert arrives by email, with unsubscribe headers.
    agent = reporting_agent(alice, capture)
    clock = later()
    evaluate.run(clock)
    offline = offline_delivery(alice, channel)
    assert queued_deliveries(outbox) == [offline.pk]
    assert delivery.deliver(offline.pk, now=clock) == "sent"
    assert len(smtp.received()) == 2
    alert = smtp.received()[-1]
    assert alert["Subject"] == offline.event.title == f"{agent.node.name} is offline"
    assert alert["Message-ID"] != mail["Message-ID"]
    assert alert["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = re.fullmatch(r"<(\S+)>", re.sub(r"\s", "", alert["List-Unsubscribe"]))
    assert unsubscribe, alert["List-Unsubscribe"]
    assert unsubscribe[1] in text_of(alert)
    unsubscribe_path = path_of(unsubscribe[1])
    assert unsubscribe_path.startswith("/alerts/unsubscribe/")

    # The machine is back: "back online" is raised and queued ...
    report_again(agent, capture)
    evaluate.run()
    online = AlertEvent.objects.get(contributor=alice, kind="online").deliveries.get()
    assert queued_deliveries(outbox) == [online.pk]

    # ... when the mail client posts the one-click unsubscribe (RFC 8058), signed out.
    answer = Client(enforce_csrf_checks=True).post(
        unsubscribe_path, {"List-Unsubscribe": "One-Click"}
    )
    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("text/plain")
    assert answer.content == b"Unsubscribed.\n"
    channel.refresh_from_db()
    assert channel.unsubscribed_at is not None

    assert delivery.deliver(online.pk) == "cancelled"
    online.refresh_from_db()
    assert online.last_error == "The address unsubscribed."
    # The next outage raises nothing for this address either.
    evaluate.run(later())
    assert queued_deliveries(outbox) == []
    assert AlertDelivery.objects.filter(channel=channel).count() == 3  # test, offline, online
    assert len(smtp.received()) == 2
    page = client.get(PAGE).content.decode()
    assert "unsubscribed" in page
    # Neither the page nor anything else the owner of the account sees holds a verify link:
    # only the address's owner can confirm it.
    assert "/alerts/verify/" not in page

    # To resume, the owner asks for a test: it is a new confirmation email, and until its link
    # is followed nothing else goes to the address.
    press_test(client, channel, capture)
    assert run_queued(outbox) == ["sent"]
    resume = smtp.received()[-1]
    assert resume["Subject"] == "Confirm your OmniTensor alerts"
    assert "/alerts/verify/" in text_of(resume)
    assert "/alerts/verify/" not in client.get(PAGE).content.decode()


# --- 2. signed webhooks ------------------------------------------------------------------------


@pytest.mark.django_db
def test_webhook_requests_are_signed_with_the_secret_shown_once(
    alice, private_targets, receivers, outbox, django_capture_on_commit_callbacks
):
    """The secret appears once, on the answer to adding the webhook (not cached, not on the
    page later); a receiver that checks signatures with it accepts the test, which verifies
    the channel. After a rotation, a receiver still holding the old secret refuses."""
    capture = django_capture_on_commit_callbacks
    receiver = receivers()
    client = signed_in(alice)
    response = client.post(ADD, {"kind": "webhook", "target": f"{receiver.url}/hooks/ot?x=1"})
    secret = shown_secret(response)
    assert secret.startswith("whsec_")
    assert "no-store" in response["Cache-Control"]
    assert secret not in client.get(PAGE).content.decode()
    channel = AlertChannel.objects.get(contributor=alice)
    assert (channel.kind, channel.verified_at) == ("webhook", None)

    receiver.secret = secret
    press_test(client, channel, capture)
    assert run_queued(outbox) == ["sent"]
    [request] = receiver.received()
    assert (request.method, request.path) == ("POST", "/hooks/ot?x=1")
    assert request.headers["content-type"] == "application/json"
    header = request.headers["x-omnitensor-signature"]
    assert signature_ok(secret, header, request.body)
    # The check can fail: another secret, or a body changed on the way, does not verify.
    assert not signature_ok(AlertChannel.new_secret(), header, request.body)
    assert not signature_ok(secret, header, request.body.replace(b'"test"', b'"offline"'))
    body = request.json()
    assert request.headers["x-omnitensor-delivery"] == body["id"]
    assert request.headers["x-omnitensor-event"] == body["event"] == "test"
    assert body["title"] == "OmniTensor test alert"
    channel.refresh_from_db()
    assert channel.verified_at is not None

    rotated = shown_secret(client.post(f"/alerts/channels/{channel.pk}/secret"))
    assert rotated.startswith("whsec_") and rotated != secret
    press_test(client, channel, capture)
    assert run_queued(outbox) == ["failed"]  # the receiver, on the old secret, answered 401
    refused = AlertDelivery.objects.filter(channel=channel).order_by("pk").last()
    assert refused.last_error == "HTTP 401 from the webhook."
    assert signature_ok(rotated, receiver.received()[-1].headers["x-omnitensor-signature"],
                        receiver.received()[-1].body)  # fmt: skip
    receiver.secret = rotated
    press_test(client, channel, capture)
    assert run_queued(outbox) == ["sent"]
    assert len(receiver.received()) == 3


# --- 3. Apprise ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_apprise_json_target_gets_the_test_and_the_alerts(
    alice, private_targets, receivers, outbox, django_capture_on_commit_callbacks
):
    """A json:// Apprise URL is verified by its test and then receives alerts, through
    Apprise itself; the page does not show the URL's path (Apprise URLs hold tokens)."""
    capture = django_capture_on_commit_callbacks
    receiver = receivers()
    client = signed_in(alice)
    target = f"json://127.0.0.1:{receiver.port}/apprise/inbox-token"
    assert client.post(ADD, {"kind": "apprise", "target": target}).status_code == 302
    channel = AlertChannel.objects.get(contributor=alice)
    assert (channel.kind, channel.target, channel.verified_at) == ("apprise", target, None)
    assert "inbox-token" not in client.get(PAGE).content.decode()

    press_test(client, channel, capture)
    assert run_queued(outbox) == ["sent"]
    [request] = receiver.received()
    assert (request.method, request.path) == ("POST", "/apprise/inbox-token")
    assert request.json()["title"] == "OmniTensor test alert"
    assert "If you read this, the channel works." in request.json()["message"]
    channel.refresh_from_db()
    assert channel.verified_at is not None

    take_only(client, channel, ["offline"])
    agent = reporting_agent(alice, capture)
    clock = later()
    evaluate.run(clock)
    offline = offline_delivery(alice, channel)
    assert queued_deliveries(outbox) == [offline.pk]
    assert delivery.deliver(offline.pk, now=clock) == "sent"
    assert len(receiver.received()) == 2
    assert receiver.received()[-1].json()["title"] == f"{agent.node.name} is offline"


# --- 4. attacks and failures ---------------------------------------------------------------------

PRIVATE = "loopback, private or reserved address"
REFUSED = [
    ("webhook", "http://127.0.0.1:8080/hook", PRIVATE),
    ("webhook", "http://localhost/hook", PRIVATE),
    ("webhook", "http://127.1/hook", PRIVATE),
    ("webhook", "http://2130706433/hook", PRIVATE),  # 127.0.0.1 as one number
    ("webhook", "http://0x7f.1/hook", PRIVATE),  # and in hex
    ("webhook", "http://0.0.0.0/hook", PRIVATE),
    ("webhook", "http://10.1.2.3/hook", PRIVATE),
    ("webhook", "http://192.168.1.1/hook", PRIVATE),
    ("webhook", "http://100.64.0.1/hook", PRIVATE),  # carrier-grade NAT
    ("webhook", "http://169.254.169.254/latest/meta-data/", PRIVATE),  # cloud metadata
    ("webhook", "http://[::1]:8080/hook", PRIVATE),
    ("webhook", "http://[::ffff:127.0.0.1]/hook", PRIVATE),  # IPv4-mapped loopback
    ("webhook", "http://[fd00::1]/hook", PRIVATE),
    ("webhook", "http://[::127.0.0.1]/hook", PRIVATE),  # IPv4-compatible loopback
    ("webhook", "http://[64:ff9b::7f00:1]/hook", PRIVATE),  # NAT64 of 127.0.0.1
    ("webhook", "http://[64:ff9b::a9fe:a9fe]/hook", PRIVATE),  # NAT64 of the metadata address
    ("webhook", "http://[2002:7f00:1::1]/hook", PRIVATE),  # 6to4 of 127.0.0.1
    ("webhook", "http://[fec0::1]/hook", PRIVATE),  # site-local
    ("webhook", "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook", PRIVATE),  # Teredo
    ("webhook", "https://user:password@example.com/hook", "no user or password"),
    ("webhook", "ftp://example.com/hook", "starts with https://"),
    ("webhook", "file:///etc/passwd", "starts with https://"),
    ("webhook", "gopher://127.0.0.1:6379/_FLUSHALL", "starts with https://"),
    ("webhook", "//example.com/hook", "starts with https://"),
    ("apprise", "mailto://user:pass@example.com", "Apprise URLs here start with one of"),
    ("apprise", "windows://", "Apprise URLs here start with one of"),
    ("apprise", "http://127.0.0.1/hook", "Apprise URLs here start with one of"),
    ("apprise", "json://127.0.0.1/hook", PRIVATE),
    ("apprise", "JSON://127.0.0.1:8080/hook", PRIVATE),
    ("apprise", "jsons://10.0.0.5/hook", PRIVATE),
    ("apprise", "json://[::1]:8080/hook", PRIVATE),
    ("apprise", "ntfy://127.0.0.1/topic", PRIVATE),
    ("apprise", "gotify://localhost/token", PRIVATE),
    ("email", "not-an-address", "is not an email address"),
    ("email", "alice@example.com\r\nBcc: eve@example.com", "is not an email address"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("kind", "target", "why"), REFUSED)
def test_targets_on_private_addresses_or_other_schemes_are_refused(
    alice, settings, kind, target, why
):
    """With private targets off (production), what could reach the portal's own network or
    another protocol is refused with a message saying why, and no channel is created."""
    settings.ALERT_ALLOW_PRIVATE_TARGETS = False
    client = signed_in(alice)
    response = client.post(ADD, {"kind": kind, "target": target}, follow=True)
    assert response.status_code == 200
    assert response.redirect_chain == [(PAGE, 302)]
    assert why in page_messages(response)
    assert not AlertChannel.objects.exists()


@pytest.mark.django_db
def test_a_target_checked_when_added_is_checked_again_when_sent(
    alice, settings, private_targets, receivers, outbox, django_capture_on_commit_callbacks
):
    """A name that resolved to a public address when the channel was added may resolve to a
    private one later (DNS rebinding): the address is checked at every send."""
    receiver = receivers()
    client = signed_in(alice)
    shown_secret(client.post(ADD, {"kind": "webhook", "target": receiver.url + "/hook"}))
    channel = AlertChannel.objects.get(contributor=alice)
    settings.ALERT_ALLOW_PRIVATE_TARGETS = False
    press_test(client, channel, django_capture_on_commit_callbacks)
    assert run_queued(outbox) == ["failed"]
    assert PRIVATE in AlertDelivery.objects.get(channel=channel).last_error
    assert receiver.received() == []
    channel.refresh_from_db()
    assert channel.verified_at is None


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["webhook", "apprise"])
def test_a_redirect_to_a_private_address_is_not_followed(
    alice, kind, private_targets, receivers, outbox, django_capture_on_commit_callbacks
):
    """A receiver answering 302 towards an internal service (the metadata endpoint, here a
    second loopback server) gets no request followed there: the delivery fails, says why, and
    the channel stays unverified."""
    internal = receivers()
    public = receivers(status=302, headers={"Location": f"{internal.url}/latest/meta-data/"})
    target = f"{public.url}/hook" if kind == "webhook" else f"json://127.0.0.1:{public.port}/hook"
    client = signed_in(alice)
    response = client.post(ADD, {"kind": kind, "target": target})
    assert response.status_code in (200, 302)
    channel = AlertChannel.objects.get(contributor=alice)
    press_test(client, channel, django_capture_on_commit_callbacks)
    assert run_queued(outbox) == ["failed"]
    assert len(public.received()) == 1
    assert internal.received() == []
    failed = AlertDelivery.objects.get(channel=channel)
    assert failed.last_error
    if kind == "webhook":
        assert failed.last_error == "HTTP 302: redirects are not followed."
    channel.refresh_from_db()
    assert channel.verified_at is None


@pytest.mark.django_db
def test_a_failing_receiver_is_retried_with_back_off_then_shown_failed(
    alice, settings, private_targets, receivers, outbox, django_capture_on_commit_callbacks
):
    """A receiver answering 500: each attempt records the error and waits 30 s, 2, 8, 32 min,
    2 h 8 min (from the attempt's clock; not due a second earlier); the 6th failure is final
    and the /alerts/ history shows it."""
    settings.ALERT_MAX_ATTEMPTS = 6
    settings.ALERT_RETRY_BASE_S = 30
    capture = django_capture_on_commit_callbacks
    receiver = receivers()
    client = signed_in(alice)
    channel = add_verified_webhook(client, receiver, capture, outbox)
    take_only(client, channel, ["offline"])
    receiver.status = 500

    reporting_agent(alice, capture)
    clock = later()
    evaluate.run(clock)
    row = offline_delivery(alice, channel)
    assert queued_deliveries(outbox) == [row.pk]
    waits = [30, 120, 480, 1920, 7680]
    for attempt in range(1, 7):
        outcome = delivery.deliver(row.pk, now=clock)
        row.refresh_from_db()
        assert (row.attempts, row.last_error) == (attempt, "HTTP 500 from the webhook.")
        assert len(receiver.received("offline")) == attempt
        if attempt == 6:
            break
        assert (outcome, row.status, row.lease_until) == ("pending", "pending", None)
        assert row.next_attempt_at == clock + timedelta(seconds=waits[attempt - 1])
        assert delivery.deliver(row.pk, now=row.next_attempt_at - timedelta(seconds=1)) == (
            "skipped"
        )
        assert len(receiver.received("offline")) == attempt
        clock = row.next_attempt_at

    assert (outcome, row.status, row.sent_at) == ("failed", "failed", None)
    delivery.sweep(clock + timedelta(days=30))
    assert queued_deliveries(outbox) == []  # failed is final: the sweeper leaves it
    html = client.get(PAGE).content.decode()
    assert 'data-status="failed"' in html
    assert "HTTP 500 from the webhook." in html
    assert "6 tries" in html


@pytest.mark.django_db
def test_another_contributor_cannot_touch_a_channel(
    alice, bob, private_targets, receivers, outbox, django_capture_on_commit_callbacks
):
    """bob posting to the actions of alice's channel gets 404 for each, and nothing of it
    changes: no test is sent, its settings and secret stay, it is not removed."""
    receiver = receivers()
    alice_client = signed_in(alice)
    secret = shown_secret(
        alice_client.post(ADD, {"kind": "webhook", "target": receiver.url + "/alice"})
    )
    channel = AlertChannel.objects.get(contributor=alice)
    bob_client = signed_in(bob)
    with django_capture_on_commit_callbacks(execute=True):
        for action, data in [
            ("test", {}),
            ("delete", {}),
            ("secret", {}),
            ("settings", {"event_digest": "on"}),  # unticks everything else, pauses it
        ]:
            response = bob_client.post(f"/alerts/channels/{channel.pk}/{action}", data)
            assert response.status_code == 404, action
        # Signed out, the same requests go to the sign-in page.
        response = Client().post(f"/alerts/channels/{channel.pk}/test")
        assert response.status_code == 302
        assert not response["Location"].startswith(PAGE)

    kept = AlertChannel.objects.get(pk=channel.pk)
    assert (kept.contributor, kept.secret, kept.enabled) == (alice, secret, True)
    assert kept.events == DEFAULT_EVENTS
    assert not AlertEvent.objects.exists()
    assert queued_deliveries(outbox) == []
    assert receiver.received() == []
    assert receiver.url not in bob_client.get(PAGE).content.decode()


def _altered(token: str, part: int) -> str:
    """The token with one character of its `part`-th colon-separated field changed."""
    fields = token.split(":")
    text = fields[part]
    middle = len(text) // 2
    fields[part] = text[:middle] + ("A" if text[middle] != "A" else "B") + text[middle + 1 :]
    return ":".join(fields)


@pytest.mark.django_db
def test_forged_or_altered_links_give_404_and_change_nothing(
    alice, smtp, outbox, django_capture_on_commit_callbacks
):
    """The unsubscribe link works without signing in, so it must be unforgeable: altered
    payload or signature, a token signed with another key, the verify link used to unsubscribe
    (and the reverse), junk: all 404, GET or POST, and the channel is unchanged."""
    client = signed_in(alice)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(ADD, {"kind": "email", "target": MAILBOX})
    assert run_queued(outbox) == ["sent"]
    [mail] = smtp.received()
    unsubscribe_url = re.sub(r"\s", "", mail["List-Unsubscribe"]).strip("<>")
    verify_url = re.search(rf"{re.escape(PORTAL_URL)}/alerts/verify/\S+/", text_of(mail))[0]
    unsubscribe_token = path_of(unsubscribe_url).split("/")[3]
    verify_token = path_of(verify_url).split("/")[3]
    channel = AlertChannel.objects.get(contributor=alice)
    payload = signing.loads(unsubscribe_token, salt="alerts.unsubscribe")

    forged = [
        _altered(unsubscribe_token, 0),  # the payload
        _altered(unsubscribe_token, -1),  # the signature
        unsubscribe_token + "x",
        verify_token,
        signing.dumps(
            payload, salt="alerts.unsubscribe", key="not-the-portal's-key", compress=True
        ),
        signing.dumps({"c": channel.pk}, salt="alerts.unsubscribe", key="guess"),
        "x" * 5000,
    ]
    anonymous = Client(enforce_csrf_checks=True)
    for token in forged:
        for response in (
            anonymous.get(f"/alerts/unsubscribe/{token}/"),
            anonymous.post(f"/alerts/unsubscribe/{token}/", {"List-Unsubscribe": "One-Click"}),
        ):
            assert response.status_code == 404, token
            assert "This link does not work" in response.content.decode()
    # The verify form is CSRF-protected; even past that check, these tokens verify nothing.
    past_csrf = Client()
    for token in (unsubscribe_token, _altered(verify_token, -1), _altered(verify_token, 0)):
        assert past_csrf.post(f"/alerts/verify/{token}/").status_code == 404, token

    channel.refresh_from_db()
    assert (channel.unsubscribed_at, channel.verified_at) == (None, None)
    # The genuine link works: the 404s above are the forgeries' own.
    assert anonymous.get(f"/alerts/unsubscribe/{unsubscribe_token}/").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["webhook", "apprise", "email"])
def test_an_oversized_target_is_refused_cleanly(alice, kind, private_targets):
    """A target over 2,000 characters (the column's size) is refused with a message, never cut
    to another address nor answered 5xx; 2,000 exactly is fine."""
    client = signed_in(alice)

    def target(length: int) -> str:
        start = {
            "webhook": "http://127.0.0.1:9/",
            "apprise": "json://127.0.0.1:9/",
            "email": "",
        }[kind]
        end = "@example.com" if kind == "email" else ""
        return start + "a" * (length - len(start) - len(end)) + end

    for length in (2001, 5000, 100_000):
        response = client.post(ADD, {"kind": kind, "target": target(length)}, follow=True)
        assert response.status_code == 200
        assert "at most 2000 characters" in page_messages(response)
    assert not AlertChannel.objects.exists()

    if kind != "email":  # an address of 2,000 characters is no address (RFC 5321: 254)
        response = client.post(ADD, {"kind": kind, "target": target(2000)})
        assert response.status_code in (200, 302)
        assert AlertChannel.objects.get().target == target(2000)


# --- 5. exactly once across a SIGKILLed worker ---------------------------------------------------
#
# "Exactly once" here means: the portal sends at least once, and every attempt of one delivery
# carries the same id (the `X-OmniTensor-Delivery` header and the webhook body's "id"; an email's
# Message-ID), so a receiver that acts once per id acts exactly once. A worker killed after its
# request left but before it recorded the outcome cannot know whether the receiver got it: the
# delivery stays `sending` until its lease runs out, and the sweeper then sends it again, same
# id. A worker killed before sending leaves nothing half-done: the sweeper sends it once.

# The shortest lease the settings allow for a 5 s send timeout (twice it plus 15 s): the held
# request outlasts the kill, and the send's time limits end inside the lease.
LEASE_S = 25
WORKER_ENV = {
    "ALERT_ALLOW_PRIVATE_TARGETS": "true",
    "ALERT_DELIVERY_LEASE_S": str(LEASE_S),
    "ALERT_SEND_TIMEOUT_S": "5",
}


@pytest.fixture
def short_lease(settings):
    """The test process sweeps with the workers' lease."""
    settings.ALERT_DELIVERY_LEASE_S = LEASE_S


def verified_webhook_via(worker, client, receiver) -> tuple[AlertChannel, str]:
    """Add a webhook on the page and have `worker` (the default queue's) send its test."""
    secret = shown_secret(client.post(ADD, {"kind": "webhook", "target": receiver.url + "/hook"}))
    receiver.secret = secret
    channel = AlertChannel.objects.get(target=receiver.url + "/hook")
    take_only(client, channel, ["offline"])
    assert client.post(f"/alerts/channels/{channel.pk}/test").status_code == 302
    wait_until(
        lambda: AlertChannel.objects.filter(pk=channel.pk, verified_at__isnull=False).exists(),
        90,
        "the worker never verified the webhook",
        worker.log_path,
    )
    return channel, secret


def machine_gone_quiet(owner, parked: str) -> Agent:
    """A machine enrolled through the agent API whose last report was 20 minutes ago."""
    with producer_using(default_queue=parked):
        agent = Agent(enroll(owner, [h100("quiet")]))
    Node.objects.filter(pk=agent.node_id).update(
        last_seen_at=timezone.now() - timedelta(minutes=20)
    )
    return agent


def kill_rig(receivers, reaper, tmp_path):
    """A receiver, three queues of this test's own (the worker to kill, a fresh worker, one
    nobody reads) and the first worker started on its queue."""
    receiver = receivers()
    queues = (unique_queue("alerts-killed"), unique_queue("alerts-fresh"), unique_queue("parked"))
    reaper.add(purge_queues, *queues)
    first = start_worker(
        reaper, queues[0], tmp_path / "killed.log", portal_env(queues[0], **WORKER_ENV)
    )
    return receiver, queues, first


def received_tasks(worker) -> int:
    return len(re.findall(r"contributors\.deliver_alert\[[^\]]+\] received", worker.output()))


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_a_delivery_cut_off_by_sigkill_is_sent_again_with_the_same_id(
    alice, tmp_path, reaper, receivers, private_targets, short_lease
):
    """The receiver holds the alert's request open; the worker is SIGKILLed right there. After
    the lease, the sweep sends it again through a new worker: `sent`, 2 attempts, two requests
    with one delivery id and one body, both signed: one delivery to a deduplicating receiver."""
    receiver, queues, first = kill_rig(receivers, reaper, tmp_path)
    first_queue, second_queue, parked = queues
    client = signed_in(alice)
    with producer_using(default_queue=first_queue):
        channel, secret = verified_webhook_via(first, client, receiver)
        machine_gone_quiet(alice, parked)
        receiver.hold(1)
        assert evaluate.run()["queued"] == 1
        wait_until(
            lambda: receiver.received("offline"),
            90,
            "the worker never sent the alert",
            first.log_path,
        )
    row = offline_delivery(alice, channel)
    assert (row.status, row.attempts) == ("sending", 1)
    sigkill_tree(first.proc)
    receiver.release()  # its answer goes to a dead socket
    row.refresh_from_db()
    assert (row.status, row.attempts, row.sent_at) == ("sending", 1, None)

    wait_until(lambda: timezone.now() > row.lease_until, LEASE_S + 30, "the lease never ran out")
    second = start_worker(
        reaper, second_queue, tmp_path / "fresh.log", portal_env(second_queue, **WORKER_ENV)
    )
    with producer_using(default_queue=second_queue):
        assert delivery.sweep() == 1
    wait_until(
        lambda: AlertDelivery.objects.filter(pk=row.pk, status="sent").exists(),
        90,
        "the sweep did not get the delivery sent again",
        second.log_path,
    )
    row.refresh_from_db()
    assert (row.attempts, row.last_error, row.lease_until) == (2, "", None)

    requests = receiver.received("offline")
    assert len(requests) == 2
    assert all(signature_ok(secret, r.headers["x-omnitensor-signature"], r.body) for r in requests)
    assert requests[0].body == requests[1].body
    ids = {r.headers["x-omnitensor-delivery"] for r in requests}
    assert ids == {r.json()["id"] for r in requests}
    assert len(ids) == 1  # what a receiver that dedupes on the id acts on: once


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_before_sending_loses_nothing(
    alice, tmp_path, reaper, receivers, private_targets, short_lease
):
    """The worker gets the alert's task but cannot take its lease (this test holds the
    database's write lock, or the row's lock on PostgreSQL) and is SIGKILLed waiting: its
    message is gone with it and nothing was sent. The sweep then finds the delivery due again,
    and a new worker sends it once."""
    receiver, queues, first = kill_rig(receivers, reaper, tmp_path)
    first_queue, second_queue, parked = queues
    client = signed_in(alice)
    with producer_using(default_queue=first_queue):
        channel, _ = verified_webhook_via(first, client, receiver)
    machine_gone_quiet(alice, parked)
    with producer_using(default_queue=parked):
        assert evaluate.run()["queued"] == 1  # to nobody: this test hands it over below
    purge_queues(parked)
    row = offline_delivery(alice, channel)

    before = received_tasks(first)
    with transaction.atomic(), producer_using(default_queue=first_queue):
        list(AlertDelivery.objects.select_for_update().filter(pk=row.pk))
        # What the sweep queued went to nobody: hand the worker the same task.
        deliver_alert.delay(row.pk)
        wait_until(
            lambda: received_tasks(first) > before,
            60,
            "the worker never took the task",
            first.log_path,
        )
        # Let it reach the lock (it cannot pass it: killed before or while waiting, it has
        # sent nothing either way).
        clock_time.sleep(1)
        sigkill_tree(first.proc)

    row.refresh_from_db()
    assert (row.status, row.sent_at) in (("pending", None), ("sending", None))
    assert receiver.received("offline") == []
    # On PostgreSQL the killed worker's UPDATE may still run once the lock is released (its
    # server-side backend outlives the process): then it holds a lease nobody will use, and
    # the delivery comes due again when that runs out, like any lost send. Queued once within
    # a lease, the sweep does not queue it again before then either.
    with producer_using(default_queue=parked):
        assert delivery.sweep() == 0

    second = start_worker(
        reaper, second_queue, tmp_path / "fresh.log", portal_env(second_queue, **WORKER_ENV)
    )
    with producer_using(default_queue=second_queue):
        wait_until(
            lambda: delivery.sweep() == 1, 2 * LEASE_S + 30, "the delivery never came due again"
        )
    wait_until(
        lambda: AlertDelivery.objects.filter(pk=row.pk, status="sent").exists(),
        90,
        "the sweep did not get the delivery sent",
        second.log_path,
    )
    row.refresh_from_db()
    assert row.attempts in (1, 2)  # 2 when the dead worker's lease was taken
    assert len(receiver.received("offline")) == 1


# --- 6. quiet hours ------------------------------------------------------------------------------

ZONE = "Asia/Kolkata"  # UTC+05:30 all year: no DST to shift the expected ends


def next_local(hour: int, minute: int, after: datetime) -> datetime:
    zone = zoneinfo.ZoneInfo(ZONE)
    local = after.astimezone(zone)
    moment = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return moment if moment > local else moment + timedelta(days=1)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("local_clock", "held_days"),
    [((23, 30), 1), ((3, 0), 0), ((12, 0), None)],
    ids=["before-midnight", "after-midnight", "daytime"],
)
def test_quiet_hours_hold_a_delivery_until_they_end(
    alice, local_clock, held_days, private_targets, receivers, outbox,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    """Quiet hours 22:00-07:00 in Asia/Kolkata: an alert raised at 23:30 or 03:00 there is
    held until 07:00 local (the next day or the same), not sent a second earlier, then sent;
    one raised at noon goes at once."""
    capture = django_capture_on_commit_callbacks
    receiver = receivers()
    client = signed_in(alice)
    prefs = {
        "time_zone": ZONE, "offline_after_min": 10, "temperature_c": 85,
        "temperature_for_min": 5, "quiet_start": "22:00", "quiet_end": "07:00",
    }  # fmt: skip
    assert client.post("/alerts/preferences", prefs).status_code == 302
    assert f"22:00 to 07:00 {ZONE}" in client.get(PAGE).content.decode()
    channel = add_verified_webhook(client, receiver, capture, outbox)
    take_only(client, channel, ["offline"])
    reporting_agent(alice, capture)

    clock = next_local(*local_clock, after=later())
    evaluate.run(clock)
    row = offline_delivery(alice, channel)
    if held_days is None:
        assert (row.held_for_quiet_hours, row.next_attempt_at) == (False, clock)
        assert queued_deliveries(outbox) == [row.pk]
        assert delivery.deliver(row.pk, now=clock) == "sent"
        assert len(receiver.received("offline")) == 1
        return

    end = datetime.combine(
        clock.date() + timedelta(days=held_days), time(7, 0), tzinfo=zoneinfo.ZoneInfo(ZONE)
    )
    assert row.held_for_quiet_hours
    assert row.next_attempt_at == end
    assert queued_deliveries(outbox) == []
    assert "(after quiet hours)" in client.get(PAGE).content.decode()
    just_before = end - timedelta(seconds=1)
    for now in (clock, just_before):
        assert delivery.deliver(row.pk, now=now) == "skipped"
    delivery.sweep(just_before)
    assert queued_deliveries(outbox) == []
    assert receiver.received("offline") == []

    delivery.sweep(end)
    assert queued_deliveries(outbox) == [row.pk]
    assert delivery.deliver(row.pk, now=end) == "sent"
    [request] = receiver.received("offline")
    assert request.json()["event"] == "offline"


@pytest.mark.django_db
def test_a_retry_that_would_fall_in_quiet_hours_waits_for_their_end(
    alice, settings, private_targets, receivers, outbox, django_capture_on_commit_callbacks
):
    """A send failing at 21:59:45 local, just before quiet hours (22:00-07:00), is retried at
    07:00 local, not 30 s later in the quiet hours."""
    settings.ALERT_RETRY_BASE_S = 30
    capture = django_capture_on_commit_callbacks
    receiver = receivers()
    client = signed_in(alice)
    prefs = {
        "time_zone": ZONE, "offline_after_min": 10, "temperature_c": 85,
        "temperature_for_min": 5, "quiet_start": "22:00", "quiet_end": "07:00",
    }  # fmt: skip
    assert client.post("/alerts/preferences", prefs).status_code == 302
    channel = add_verified_webhook(client, receiver, capture, outbox)
    take_only(client, channel, ["offline"])
    reporting_agent(alice, capture)
    clock = next_local(21, 59, after=later()) + timedelta(seconds=45)
    evaluate.run(clock)
    row = offline_delivery(alice, channel)
    assert not row.held_for_quiet_hours
    receiver.status = 500

    assert delivery.deliver(row.pk, now=clock) == "pending"

    row.refresh_from_db()
    end = next_local(7, 0, after=clock)
    assert (row.next_attempt_at, row.held_for_quiet_hours) == (end, True)
    assert delivery.deliver(row.pk, now=clock + timedelta(seconds=30)) == "skipped"
    receiver.status = 200
    assert delivery.deliver(row.pk, now=end) == "sent"
    assert len(receiver.received("offline")) == 2


@pytest.mark.django_db
def test_an_address_is_not_flooded_by_adding_and_removing_it(
    alice, bob, settings, outbox, smtp, django_capture_on_commit_callbacks
):
    """Adding an address sends it a confirmation, and so does its test button: whoever asks,
    adding, removing and adding it again, one address gets at most ALERT_EMAIL_TESTS_PER_DAY
    of them a day, and the contributor at most ALERT_TESTS_PER_HOUR test messages an hour."""
    settings.ALERT_EMAIL_TESTS_PER_DAY = 2
    settings.ALERT_TESTS_PER_HOUR = 5
    capture = django_capture_on_commit_callbacks
    victim = "victim@example.com"
    answers = []
    for client in (signed_in(alice), signed_in(alice), signed_in(bob)):
        with capture(execute=True):
            answers.append(client.post(ADD, {"kind": "email", "target": victim}, follow=True))
        run_queued(outbox)
        AlertChannel.objects.filter(target=victim).delete()
    assert len(smtp.to(victim)) == 2
    assert "This address got 2 messages from us in the last day" in page_messages(answers[2])
    assert not AlertChannel.objects.filter(target=victim).exists()

    client = signed_in(alice)
    for n in range(6):
        with capture(execute=True):
            answer = client.post(
                ADD, {"kind": "email", "target": f"own{n}@example.com"}, follow=True
            )
    assert "At most 5 test messages an hour." in page_messages(answer)
    assert not AlertChannel.objects.filter(target="own5@example.com").exists()


def test_matrix_discovery_never_takes_a_send_to_a_second_server(settings, private_targets):
    """Matrix discovery would ask the named server where its homeserver is and then send
    there, to any address: the portal's Apprise plugins never discover."""
    from contributors.alerts import targets

    plugin = targets._plugin("matrixs://user:pass@matrix.example.org/#room")
    assert plugin.discovery is False
    assert plugin.redirects is False
