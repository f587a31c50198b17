"""/alerts/ in headless Chromium, with a real worker and a real webhook receiver: a contributor
adds a signed webhook, copies its secret from the page (shown once), sends a test, and sees it
delivered and the channel verified; the receiver checked the signature with that secret."""

import pytest

from contributors.models import AlertChannel
from portal.celery_app import app as celery_app
from tests.support.alert_receivers import Receiver
from tests.support.browser import sign_in
from tests.support.processes import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.processes, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def to_worker(worker):
    """Send this process's tasks (the live server's included) to the real worker's queue."""
    previous = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = worker.queue
    yield worker
    celery_app.conf.task_default_queue = previous


def test_a_webhook_added_in_the_browser_is_tested_verified_and_signed(
    page, live_server, alice, settings, to_worker
):
    settings.ALERT_ALLOW_PRIVATE_TARGETS = True
    receiver = Receiver().start()
    try:
        sign_in(page.context, live_server, alice)
        page.goto(f"{live_server.url}/alerts/")
        assert page.locator("#no-channels").is_visible()

        page.select_option("#channel-kind", "webhook")
        page.fill("#channel-target", f"{receiver.url}/hooks/omnitensor")
        page.fill("#channel-label", "<b>my server</b>")
        page.click("#add-channel button[type=submit]")

        secret = page.locator("#webhook-secret").inner_text().strip()
        assert secret.startswith("whsec_")
        # The label is text, never markup.
        assert page.locator("article[data-channel] h3 b").count() == 0
        assert "<b>my server</b>" in page.locator("article[data-channel] h3").inner_text()
        assert "not verified" in page.locator("article[data-channel]").inner_text()
        receiver.secret = secret  # from now on the receiver refuses a bad signature (401)

        page.goto(f"{live_server.url}/alerts/")
        # Shown once: a later visit has no secret on it.
        assert page.locator("#webhook-secret").count() == 0
        assert secret not in page.content()
        page.click("article[data-channel] button:has-text('Send a test')")

        wait_for(
            lambda: receiver.received("test"),
            timeout=90,
            message=f"the worker never sent the test:\n{to_worker.output()}",
        )
        channel = AlertChannel.objects.get()
        wait_for(
            lambda: AlertChannel.objects.filter(pk=channel.pk, verified_at__isnull=False).exists(),
            timeout=30,
            message=to_worker.output(),
        )
        page.goto(f"{live_server.url}/alerts/")
        card = page.locator("article[data-channel]").inner_text()
        assert "verified" in card and "not verified" not in card
        row = page.locator("#alert-history tbody tr").first.inner_text()
        assert "OmniTensor test alert" in row
        assert "delivered" in row
    finally:
        receiver.stop()

    (request,) = receiver.received("test")
    assert request.path == "/hooks/omnitensor"
    body = request.json()
    assert body["event"] == "test" and body["id"] == request.headers["x-omnitensor-delivery"]
    assert page.console_errors == []
