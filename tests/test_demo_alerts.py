"""The demo shows alerts: a demo machine is switched off on its schedule, and alice's alert
history says so, delivered by email to the file backend."""

import dataclasses
from datetime import timedelta

import pytest
from django.test import Client

from contributors.alerts import delivery, evaluate
from contributors.models import AlertDelivery, AlertEvent, Node, TelemetryBatch
from contributors.telemetry import store as ingest
from portal.demo import DEMO_MACHINES, DEMO_OFFLINE_AFTER_MIN, Fleet, demo_account
from tests.support.processes import wait_for

pytestmark = [
    pytest.mark.processes,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("seeded_catalog"),
]


def test_the_demo_machine_that_goes_offline_shows_in_alices_alert_history(
    live_server, settings, tmp_path
):
    settings.AGENT_SAMPLE_INTERVAL_S = 1
    settings.AGENT_REPORT_INTERVAL_S = 1
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path / "mail")
    (scheduled,) = [m for m in DEMO_MACHINES if m.outage_every]
    # The demo's schedule, compressed from minutes to seconds: up 6 s, off 12 s, up again.
    machine = dataclasses.replace(scheduled, outage_every=1.0, outage_at=0.1, outage_min=0.2)
    fleet = Fleet(live_server.url, tmp_path / "demo", machines=[machine])

    def stored():
        for pk in TelemetryBatch.objects.filter(status="pending").values_list("pk", flat=True):
            ingest.ingest(pk)
        return Node.objects.get(name=machine.name)

    try:
        fleet.start()
        wait_for(lambda: stored().last_seen_at is not None, timeout=60, message="never reported")
        # Switched off: its last report stops moving.
        last = []

        def switched_off():
            last.append(stored().last_seen_at)
            return len(last) > 20 and last[-1] == last[-20]

        wait_for(switched_off, timeout=60, interval=0.25, message="it was never switched off")
        went_silent = last[-1]
        # Evaluated as beat would, a minute after alice's threshold passed.
        offline_at = went_silent + timedelta(minutes=DEMO_OFFLINE_AFTER_MIN, seconds=60)
        evaluate.run(offline_at)
        (offline,) = AlertEvent.objects.filter(kind="offline")
        for pk in AlertDelivery.objects.values_list("pk", flat=True):
            assert delivery.deliver(pk, offline_at) == "sent"
        wait_for(lambda: stored().last_seen_at > went_silent, timeout=60, message="never came back")
        evaluate.run()
        (online,) = AlertEvent.objects.filter(kind="online")
        for pk in AlertDelivery.objects.filter(event=online).values_list("pk", flat=True):
            assert delivery.deliver(pk) == "sent"
    finally:
        fleet.stop.set()
        for thread in fleet.threads:
            thread.join(timeout=30)

    alice = offline.contributor
    assert alice.username == demo_account("alice").address
    assert offline.title == f"{machine.name} is offline"
    assert online.title == f"{machine.name} is back online"
    mails = "".join(p.read_text() for p in (tmp_path / "mail").iterdir())
    assert f"Subject: {machine.name} is offline" in mails
    assert f"Subject: {machine.name} is back online" in mails
    assert "To: alice@example.com" in mails
    client = Client()
    client.force_login(alice)
    page = client.get("/alerts/").content.decode()
    assert page.count("delivered") >= 2
    assert f"{machine.name} is offline" in page and f"{machine.name} is back online" in page
