"""Alerts: where a contributor wants to hear about their GPUs (channels and preferences), the
conditions the evaluator tracks, the events it raised and the delivery of each event to each
channel. `contributors.alerts` holds the logic; README "Alerts" tells the whole story.
"""

import secrets
import zoneinfo

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from contributors.models.accounts import Contributor
from contributors.models.fleet import GPU, Node


class EventKind(models.TextChoices):
    OFFLINE = "offline", "a machine or GPU went offline"
    ONLINE = "online", "it came back online"
    TEMPERATURE = "temperature", "a GPU ran hot for a while"
    EPOCH_AT_RISK = "epoch_at_risk", "before the epoch closes: rewards at risk"
    EARNED_NOTHING = "earned_nothing", "after settlement: a GPU earned nothing"
    VERIFICATION_FAILED = "verification_failed", "a proof-of-GPU challenge failed"
    CLAIM_CONFIRMED = "claim_confirmed", "a claim was confirmed on-chain"
    VOUCHER_EXPIRED = "voucher_expired", "a claim voucher expired unredeemed"
    DIGEST = "digest", "daily earnings digest"
    TEST = "test", "a test message"


# What a new channel is subscribed to: everything but the digest (a choice of its own).
DEFAULT_EVENTS = [k for k in EventKind.values if k not in (EventKind.DIGEST, EventKind.TEST)]


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not an IANA time zone such as Europe/Berlin.")


class AlertPreferences(models.Model):
    """One contributor's thresholds, time zone and quiet hours (defaults when absent)."""

    contributor = models.OneToOneField(
        Contributor, on_delete=models.CASCADE, related_name="alert_preferences"
    )
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    offline_after_min = models.PositiveSmallIntegerField(
        default=10, help_text="Minutes without reports before an offline alert (2-1440)."
    )
    temperature_c = models.PositiveSmallIntegerField(
        default=85, help_text="A GPU at or above this temperature, °C (40-120) …"
    )
    temperature_for_min = models.PositiveSmallIntegerField(
        default=5, help_text="… for this many minutes (1-240) raises an alert."
    )
    quiet_start = models.TimeField(
        null=True, blank=True, help_text="Local time quiet hours begin; alerts wait until …"
    )
    quiet_end = models.TimeField(null=True, blank=True, help_text="… this local time.")

    class Meta:
        verbose_name_plural = "alert preferences"
        constraints = [
            models.CheckConstraint(
                condition=Q(offline_after_min__gte=2, offline_after_min__lte=1440),
                name="alertprefs_offline_after_range",
            ),
            models.CheckConstraint(
                condition=Q(temperature_c__gte=40, temperature_c__lte=120),
                name="alertprefs_temperature_range",
            ),
            models.CheckConstraint(
                condition=Q(temperature_for_min__gte=1, temperature_for_min__lte=240),
                name="alertprefs_temperature_for_range",
            ),
        ]

    def __str__(self) -> str:
        return f"alert preferences of {self.contributor}"


class AlertChannel(models.Model):
    """One place a contributor's alerts go: an email address, an Apprise URL (Discord, Slack,
    Telegram, ntfy, Matrix, a JSON webhook …) or a signed webhook of ours.

    Alerts go only to verified channels: an email address is verified by the link in its test
    message, the others by a test message their server accepted.
    """

    class Kind(models.TextChoices):
        EMAIL = "email", "email"
        APPRISE = "apprise", "chat or push (Apprise URL)"
        WEBHOOK = "webhook", "signed webhook"

    contributor = models.ForeignKey(
        Contributor, on_delete=models.CASCADE, related_name="alert_channels"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    label = models.CharField(max_length=80, blank=True)
    target = models.CharField(
        max_length=2000, help_text="The email address, Apprise URL or webhook URL."
    )
    secret = models.CharField(
        max_length=64, blank=True, help_text="HMAC key of a signed webhook (shown once)."
    )
    events = models.JSONField(default=list, help_text="The event kinds this channel takes.")
    enabled = models.BooleanField(default=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(
        null=True, blank=True, help_text="Set by the unsubscribe link of an email."
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["contributor_id", "created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["contributor", "kind", "target"], name="alertchannel_unique_target"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.display_target} of {self.contributor}"

    @property
    def display_target(self) -> str:
        """The target without what would let a reader post to it: Apprise URLs hold tokens
        wherever their scheme puts them (a bot id, a topic, a user key), and a webhook's path
        may be its secret; only the scheme and a webhook's host are shown."""
        if self.kind == self.Kind.EMAIL:
            return self.target
        scheme, _, rest = self.target.partition("://")
        if self.kind == self.Kind.WEBHOOK:
            host = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
            return f"{scheme}://{host[:60]}/…"
        return f"{scheme[:12]}://…"

    @property
    def active(self) -> bool:
        return self.enabled and self.verified_at is not None and self.unsubscribed_at is None

    @staticmethod
    def new_secret() -> str:
        return "whsec_" + secrets.token_urlsafe(32)


class AlertCondition(models.Model):
    """A state the evaluator watches from start to end: a node or GPU offline, a GPU hot.

    It opens when first seen, notifies once it has lasted (`notify_after`), and resolves when
    it ends; a condition that ended before `notify_after` is never sent (short blips are
    damped), and only notified conditions send their "resolved" event. At most one condition
    per subject and kind is open (unique constraints), so a second evaluator cannot open two.
    """

    class Kind(models.TextChoices):
        NODE_OFFLINE = "node_offline", "machine offline"
        GPU_OFFLINE = "gpu_offline", "GPU offline while its machine reports"
        HOT = "hot", "GPU temperature high"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    contributor = models.ForeignKey(
        Contributor, on_delete=models.CASCADE, related_name="alert_conditions"
    )
    node = models.ForeignKey(Node, null=True, blank=True, on_delete=models.CASCADE)
    gpu = models.ForeignKey(GPU, null=True, blank=True, on_delete=models.CASCADE)
    started_at = models.DateTimeField()
    notify_after = models.DateTimeField()
    notified_at = models.DateTimeField(null=True, blank=True)
    damped = models.BooleanField(
        default=False, help_text="Flapping: recorded, not sent (ALERT_FLAP_LIMIT)."
    )
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "node"],
                condition=Q(resolved_at__isnull=True, node__isnull=False),
                name="alertcondition_one_open_per_node",
            ),
            models.UniqueConstraint(
                fields=["kind", "gpu"],
                condition=Q(resolved_at__isnull=True, gpu__isnull=False),
                name="alertcondition_one_open_per_gpu",
            ),
        ]
        indexes = [
            models.Index(
                fields=["kind", "notify_after"],
                condition=Q(resolved_at__isnull=True),
                name="alertcondition_open",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} since {self.started_at:%Y-%m-%d %H:%M}"


class AlertEvent(models.Model):
    """Something a contributor should hear about, once: `key` is unique per contributor, so
    an evaluator that runs twice (or crashes and reruns) raises it once. The message is
    rendered when raised and kept, so the history shows exactly what was sent."""

    contributor = models.ForeignKey(
        Contributor, on_delete=models.CASCADE, related_name="alert_events"
    )
    kind = models.CharField(max_length=20, choices=EventKind.choices)
    key = models.CharField(max_length=120)
    title = models.CharField(max_length=200)
    body = models.TextField()
    data = models.JSONField(default=dict, help_text="Machine-readable facts, sent to webhooks.")
    created_at = models.DateTimeField(default=timezone.now)
    damped = models.BooleanField(default=False, help_text="Recorded but sent to no channel.")
    fanned_out = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["contributor", "key"], name="alertevent_once"),
        ]
        indexes = [
            models.Index(fields=["contributor", "-created_at"], name="alertevent_history"),
            models.Index(
                fields=["created_at"], condition=Q(fanned_out=False), name="alertevent_pending"
            ),
        ]

    def __str__(self) -> str:
        return self.title


class AlertDelivery(models.Model):
    """One event to one channel, exactly one row per pair (the idempotency key).

    pending → sending (a worker holds it until `lease_until`) → sent, or back to pending with
    back-off, or failed after ALERT_MAX_ATTEMPTS, or cancelled when the channel was paused or
    unsubscribed before it went. A worker killed while sending leaves the row
    `sending`; when its lease runs out the sweeper sends it again, with the same id in the
    `X-OmniTensor-Delivery` header and the email's Message-ID, so a receiver can tell a repeat.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "waiting"
        SENDING = "sending", "sending"
        SENT = "sent", "delivered"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "not sent: the channel was paused or unsubscribed"

    event = models.ForeignKey(AlertEvent, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(AlertChannel, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(
        null=True, blank=True, help_text="When the sweep last queued it (not again within a lease)."
    )
    held_for_quiet_hours = models.BooleanField(default=False)
    last_error = models.CharField(max_length=500, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "alert deliveries"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["event", "channel"], name="alertdelivery_once"),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=["pending", "sending"]),
                name="alertdelivery_due",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.channel.get_kind_display()} ({self.status})"


class AlertCursor(models.Model):
    """How far the evaluator has read a stream (settled epochs, decided challenges, claims)."""

    name = models.CharField(max_length=40, unique=True)
    at = models.DateTimeField()
    position = models.BigIntegerField(default=0, help_text="The last primary key read, if any.")

    def __str__(self) -> str:
        return f"{self.name} at {self.at.isoformat()}"
