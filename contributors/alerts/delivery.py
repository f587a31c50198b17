"""Delivering events: one row per event and channel, sent by whichever worker holds its lease.

- `fan_out` turns new events into delivery rows, in the transaction that raised them, so an
  event is never raised without its deliveries (or the reverse). Quiet hours set the first
  attempt to the end of the quiet period in the contributor's time zone.
- `sweep` finds what is due (new, retried, or `sending` past its lease: a worker died) and
  queues a `contributors.deliver_alert` task for each; it runs after every evaluation.
- `deliver` takes the lease with one conditional UPDATE (only one worker wins it), sends, and
  records the outcome. A kill between the send and the record leaves the row `sending`; once
  the lease runs out it is sent again with the same delivery id, which the email's Message-ID
  and the webhook's `X-OmniTensor-Delivery` header carry, so the receiver sees one message.
"""

import logging
import zoneinfo
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from contributors.alerts import links, targets
from contributors.models import (
    AlertChannel,
    AlertDelivery,
    AlertEvent,
    AlertPreferences,
    EventKind,
)

log = logging.getLogger(__name__)

SWEEP_LIMIT = 2000


# --- quiet hours ---------------------------------------------------------------------------


def quiet_until(prefs: AlertPreferences | None, now: datetime) -> datetime | None:
    """The end of the quiet period `now` falls in, or None outside quiet hours."""
    if prefs is None or prefs.quiet_start is None or prefs.quiet_end is None:
        return None
    if prefs.quiet_start == prefs.quiet_end:
        return None
    zone = zoneinfo.ZoneInfo(prefs.time_zone)
    local = now.astimezone(zone)
    start, end, clock = prefs.quiet_start, prefs.quiet_end, local.time()
    inside = start <= clock < end if start < end else (clock >= start or clock < end)
    if not inside:
        return None
    day = local.date() if clock < end else local.date() + timedelta(days=1)
    return datetime.combine(day, end, tzinfo=zone).astimezone(now.tzinfo)


def _prefs_of(contributor_ids) -> dict[int, AlertPreferences]:
    rows = AlertPreferences.objects.filter(contributor_id__in=list(contributor_ids))
    return {p.contributor_id: p for p in rows}


# --- fan-out --------------------------------------------------------------------------------


def fan_out(now: datetime | None = None) -> int:
    """Create the deliveries of every event not fanned out yet; returns how many.

    Call inside the transaction that raised the events. Set-based: three reads and two writes
    whatever the number of events."""
    now = now or timezone.now()
    events = list(
        AlertEvent.objects.filter(fanned_out=False)
        .order_by("pk")
        .values("pk", "contributor_id", "kind", "damped")
    )
    if not events:
        return 0
    owners = {e["contributor_id"] for e in events}
    channels: dict[int, list[AlertChannel]] = {}
    active = AlertChannel.objects.filter(
        contributor_id__in=list(owners),
        enabled=True,
        verified_at__isnull=False,
        unsubscribed_at__isnull=True,
    ).only("pk", "contributor_id", "events")
    for channel in active:
        channels.setdefault(channel.contributor_id, []).append(channel)
    prefs = _prefs_of(owners)
    rows = []
    for event in events:
        if event["damped"]:
            continue
        held = quiet_until(prefs.get(event["contributor_id"]), now)
        for channel in channels.get(event["contributor_id"], ()):
            if event["kind"] in channel.events:
                rows.append(
                    AlertDelivery(
                        event_id=event["pk"],
                        channel_id=channel.pk,
                        next_attempt_at=held or now,
                        held_for_quiet_hours=held is not None,
                        created_at=now,
                    )
                )
    AlertDelivery.objects.bulk_create(rows, batch_size=2000, ignore_conflicts=True)
    AlertEvent.objects.filter(pk__in=[e["pk"] for e in events]).update(fanned_out=True)
    return len(rows)


def send_test(channel: AlertChannel) -> AlertDelivery:
    """Raise a test event for one channel (verified or not) and queue its delivery now.

    An email address not verified yet (or unsubscribed since) gets its verification link in
    this message: the link is added when the email is sent and is stored nowhere, so only the
    address's owner ever sees it."""
    now = timezone.now()
    verify = channel.kind == AlertChannel.Kind.EMAIL and (
        channel.verified_at is None or channel.unsubscribed_at is not None
    )
    with transaction.atomic():
        event = AlertEvent.objects.create(
            contributor_id=channel.contributor_id,
            kind=EventKind.TEST,
            key=f"test:{channel.pk}:{now.timestamp():.6f}",
            title="Confirm your OmniTensor alerts" if verify else "OmniTensor test alert",
            body=(
                "This is a test from your OmniTensor alerts. "
                + (
                    "Open the link in this email to confirm the address; alerts go to it only then."
                    if verify
                    else "If you read this, the channel works."
                )
            ),
            data={
                "channel": channel.pk,
                "verify": verify,
                # Kept with the event, so the per-address limit outlives a removed channel.
                **({"address": channel.target.lower()} if channel.kind == "email" else {}),
            },
            created_at=now,
            fanned_out=True,
        )
        delivery = AlertDelivery.objects.create(event=event, channel=channel, created_at=now)
        transaction.on_commit(lambda: _queue([delivery.pk]))
    return delivery


# --- sweeping and sending -------------------------------------------------------------------


def due(now: datetime) -> Q:
    return Q(status=AlertDelivery.Status.PENDING, next_attempt_at__lte=now) | Q(
        status=AlertDelivery.Status.SENDING, lease_until__lt=now
    )


def sweep(now: datetime | None = None) -> int:
    """Queue a delivery task for everything due and not queued within a lease (a backlog of
    workers is not fed the same rows every minute); returns how many were queued."""
    now = now or timezone.now()
    recently = now - timedelta(seconds=settings.ALERT_DELIVERY_LEASE_S)
    pks = list(
        AlertDelivery.objects.filter(due(now))
        .filter(Q(queued_at__isnull=True) | Q(queued_at__lt=recently))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:SWEEP_LIMIT]
    )
    AlertDelivery.objects.filter(pk__in=pks).update(queued_at=now)
    _queue(pks)
    return len(pks)


def _queue(pks: list[int]) -> None:
    from contributors.tasks import deliver_alert

    for pk in pks:
        deliver_alert.delay(pk)


def backoff(attempts: int) -> timedelta:
    """30 s, 2 min, 8 min, 32 min, 2 h 8 min … after the 1st, 2nd … failed attempt."""
    return timedelta(seconds=settings.ALERT_RETRY_BASE_S * 4 ** max(attempts - 1, 0))


def deliver(delivery_pk: int, now: datetime | None = None) -> str:
    """Send one delivery if it is due and this worker wins its lease; returns its status (or
    `skipped` when it was not ours to send, `superseded` when our lease ran out and another
    worker took the delivery before we recorded the outcome: theirs stands)."""
    now = now or timezone.now()
    lease = now + timedelta(seconds=settings.ALERT_DELIVERY_LEASE_S)
    won = AlertDelivery.objects.filter(due(now), pk=delivery_pk).update(
        status=AlertDelivery.Status.SENDING, lease_until=lease, attempts=F("attempts") + 1
    )
    if not won:
        return "skipped"
    row = AlertDelivery.objects.select_related("event", "channel").filter(pk=delivery_pk).first()
    if row is None:
        return "skipped"  # its channel or event was deleted in between
    ours = AlertDelivery.objects.filter(
        pk=row.pk, status=AlertDelivery.Status.SENDING, lease_until=lease
    )
    channel, event = row.channel, row.event
    verify = event.kind == EventKind.TEST and event.data.get("verify") is True
    if channel.unsubscribed_at is not None and not verify:
        return _finish(ours, AlertDelivery.Status.CANCELLED, "The address unsubscribed.")
    if event.kind != EventKind.TEST and not channel.active:
        return _finish(ours, AlertDelivery.Status.CANCELLED, "The channel was paused first.")
    body = event.body
    if verify:
        body += "\n\n" + links.verify_url(channel)
    message = targets.Message(
        # Stable across attempts; the event's time keeps it unique across databases too (a
        # fresh demo database starts its ids at 1 again, and mail clients drop repeated ids).
        delivery_id=f"{row.pk}.{event.pk}.{int(event.created_at.timestamp())}",
        kind=event.kind,
        title=event.title,
        body=body,
        data=event.data,
        unsubscribe_url=links.unsubscribe_url(channel)
        if channel.kind == AlertChannel.Kind.EMAIL
        else "",
    )
    try:
        if channel.kind == AlertChannel.Kind.EMAIL:
            targets.send_email(channel.target, message)
        elif channel.kind == AlertChannel.Kind.WEBHOOK:
            targets.send_webhook(channel.target, channel.secret, message)
        else:
            targets.send_apprise(channel.target, message)
    except (targets.SendFailed, targets.TargetRefused) as exc:
        return _failed_attempt(row, ours, str(exc), now)
    except Exception as exc:  # a bug, a library's surprise, the task's soft time limit
        log.exception("alert delivery %s raised", row.pk)
        return _failed_attempt(row, ours, f"{type(exc).__name__}: {exc}", now)
    if event.kind == EventKind.TEST and channel.kind != AlertChannel.Kind.EMAIL:
        # The server took our message: the channel works.
        AlertChannel.objects.filter(pk=channel.pk, verified_at__isnull=True).update(
            verified_at=timezone.now()
        )
    return _finish(ours, AlertDelivery.Status.SENT, "")


def _failed_attempt(row: AlertDelivery, ours, error: str, now: datetime) -> str:
    if row.attempts >= settings.ALERT_MAX_ATTEMPTS or row.event.kind == EventKind.TEST:
        return _finish(ours, AlertDelivery.Status.FAILED, error)
    # Back-off from the attempt's own clock (the one its lease and due-ness were read on); a
    # retry that would fall in quiet hours waits for their end, as the first attempt did.
    retry_at = now + backoff(row.attempts)
    prefs = AlertPreferences.objects.filter(contributor_id=row.event.contributor_id).first()
    held = quiet_until(prefs, retry_at)
    recorded = ours.update(
        status=AlertDelivery.Status.PENDING,
        lease_until=None,
        queued_at=None,
        next_attempt_at=held or retry_at,
        held_for_quiet_hours=held is not None,
        last_error=error[:500],
    )
    return AlertDelivery.Status.PENDING if recorded else "superseded"


def _finish(ours, status: str, error: str) -> str:
    """Record the outcome, only while the lease is still ours (`ours` filters on it)."""
    recorded = ours.update(
        status=status,
        lease_until=None,
        last_error=error[:500],
        sent_at=timezone.now() if status == AlertDelivery.Status.SENT else None,
    )
    return status if recorded else "superseded"


def retry(delivery_pks) -> int:
    """Send failed deliveries again from the start (the admin's action)."""
    return AlertDelivery.objects.filter(
        pk__in=list(delivery_pks), status=AlertDelivery.Status.FAILED
    ).update(
        status=AlertDelivery.Status.PENDING,
        attempts=0,
        queued_at=None,
        next_attempt_at=timezone.now(),
    )


def quiet_hours_text(prefs: AlertPreferences | None) -> str:
    if prefs is None or prefs.quiet_start is None or prefs.quiet_end is None:
        return ""
    start, end = (t.strftime("%H:%M") for t in (prefs.quiet_start, prefs.quiet_end))
    return f"{start} to {end} {prefs.time_zone}"
