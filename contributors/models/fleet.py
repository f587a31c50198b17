"""The fleet: nodes (machines running the agent) and their GPUs, the codes that enroll them,
the tokens of network services, and the flags that hold them for an admin."""

from datetime import timedelta
from typing import Self

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from contributors import tokens
from contributors.models.accounts import Contributor


def is_recent(seen_at, now=None) -> bool:
    """Seen within 3 report intervals: the network's definition of online (DESIGN.md)."""
    if seen_at is None:
        return False
    now = now or timezone.now()
    return (now - seen_at).total_seconds() <= 3 * settings.AGENT_REPORT_INTERVAL_S


class HashedToken(models.Model):
    """A secret handed out once and kept only as its SHA-256 (`contributors.tokens`).

    Subclasses name their scheme (the secret's first part) and their columns: with a prefix
    column, a secret is found by its public prefix and its hash compared in constant time;
    without one, it is found by its hash. The columns stay on each model, as their migrations
    wrote them.
    """

    SCHEME: str
    HASH_FIELD = "token_hash"
    PREFIX_FIELD: str | None = "token_prefix"

    class Meta:
        abstract = True

    def set_new_token(self) -> str:
        """Give this row a fresh secret and return it; the old one stops working on save."""
        issued = tokens.issue(self.SCHEME)
        setattr(self, self.HASH_FIELD, issued.digest)
        if self.PREFIX_FIELD is not None:
            setattr(self, self.PREFIX_FIELD, issued.prefix)
        return issued.plaintext

    @classmethod
    def holding(cls, secret: str, rows: models.QuerySet | None = None) -> Self | None:
        """The row among `rows` (all by default) that holds `secret`, or None."""
        rows = cls._default_manager.all() if rows is None else rows
        if cls.PREFIX_FIELD is None:
            return rows.filter(**{cls.HASH_FIELD: tokens.digest(secret)}).first()
        prefix = tokens.split_prefix(secret, cls.SCHEME)
        if prefix is None:
            return None
        row = rows.filter(**{cls.PREFIX_FIELD: prefix}).first()
        if row is None or not tokens.matches(secret, getattr(row, cls.HASH_FIELD)):
            return None
        return row


class Node(HashedToken):
    """A machine running the OmniTensor agent; it posts telemetry with its own token."""

    SCHEME = tokens.TOKEN_SCHEME

    owner = models.ForeignKey(Contributor, on_delete=models.CASCADE, related_name="nodes")
    name = models.CharField(max_length=100)
    hostname = models.CharField(max_length=255, blank=True)
    agent_version = models.CharField(max_length=50, blank=True)
    token_prefix = models.CharField(
        max_length=24, help_text="Public part of the node token, used to find the node."
    )
    token_hash = models.CharField(
        max_length=64, help_text="SHA-256 of the node token; the token itself is never stored."
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    clock_skew_s = models.FloatField(
        null=True, blank=True, help_text="Agent clock minus portal clock in the last batch, s."
    )

    class Meta:
        ordering = ["owner_id", "name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["token_prefix"], name="node_token_prefix_unique"),
            models.UniqueConstraint(fields=["token_hash"], name="node_token_hash_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.owner})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def status(self, now=None) -> str:
        if self.is_revoked:
            return "revoked"
        return "online" if is_recent(self.last_seen_at, now) else "offline"

    @classmethod
    def authenticate(cls, token: str) -> "Node | None":
        """The node holding `token` (revoked ones included: callers say 'revoked'), or None."""
        return cls.holding(token)

    def revoke(self) -> None:
        Node.objects.filter(pk=self.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.refresh_from_db(fields=["revoked_at"])


class GPU(models.Model):
    """One GPU (or MIG instance) of a node, as the agent reported it, with the owner's choices.

    `committed_memory_mib` is what the owner offers the network; empty means all of it, so a
    driver that reports a slightly different total never leaves the commitment above it.
    """

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="gpus")
    uuid = models.CharField(max_length=96, help_text="As NVML prints it: GPU-… or MIG-…")
    name = models.CharField(max_length=200, help_text="Model name, e.g. NVIDIA H100 80GB HBM3.")
    memory_total_mib = models.PositiveIntegerField()
    committed_memory_mib = models.PositiveIntegerField(
        null=True, blank=True, help_text="Memory committed to the network; empty means all."
    )
    driver_version = models.CharField(max_length=50, blank=True)
    pci_bus_id = models.CharField(max_length=50, blank=True)
    mig_parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="mig_instances",
        help_text="The physical GPU of a MIG instance; its rewards count there.",
    )
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    enabled = models.BooleanField(
        default=True, help_text="Off: the owner took this GPU out of the network."
    )
    unrated = models.BooleanField(
        default=False,
        help_text="No catalog row knows its model: its memory is capped at "
        "GPU_UNRATED_MAX_MEMORY_MIB until an admin rates the model.",
    )
    next_challenge_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When its next random proof-of-GPU challenge is due (physical GPUs only).",
    )
    # Live state, written by the ingestion worker from the newest sample it stored.
    last_sample_at = models.DateTimeField(null=True, blank=True)
    last_utilization_gpu_pct = models.FloatField(null=True, blank=True)
    last_memory_used_mib = models.PositiveIntegerField(null=True, blank=True)
    last_memory_total_mib = models.PositiveIntegerField(null=True, blank=True)
    last_temperature_c = models.FloatField(null=True, blank=True)
    last_power_w = models.FloatField(null=True, blank=True)
    last_job_id = models.CharField(max_length=128, blank=True)

    class Meta:
        verbose_name = "GPU"
        ordering = ["node_id", "uuid"]
        constraints = [
            models.UniqueConstraint(fields=["uuid"], name="gpu_uuid_unique"),
            models.CheckConstraint(
                condition=Q(committed_memory_mib__isnull=True)
                | Q(committed_memory_mib__lte=F("memory_total_mib")),
                name="gpu_committed_within_total",
            ),
            models.CheckConstraint(
                condition=~Q(mig_parent=F("id")), name="gpu_not_its_own_mig_parent"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.uuid}"

    def status(self, now=None) -> str:
        """`disabled`, `online` (a batch naming it arrived within 3 report intervals), `offline`."""
        if not self.enabled:
            return "disabled"
        return "online" if is_recent(self.last_seen_at, now) else "offline"

    @property
    def effective_committed_mib(self) -> int:
        if self.committed_memory_mib is None:
            return self.memory_total_mib
        return min(self.committed_memory_mib, self.memory_total_mib)


class EnrollmentCode(HashedToken):
    """A single-use code that lets one agent enroll one machine for its owner, for an hour.

    Only the SHA-256 of the code is kept: the code itself is shown once to the contributor.
    """

    SCHEME = "enr"
    HASH_FIELD = "code_hash"
    PREFIX_FIELD = None

    owner = models.ForeignKey(
        Contributor, on_delete=models.CASCADE, related_name="enrollment_codes"
    )
    code_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    node = models.OneToOneField(
        Node, null=True, blank=True, on_delete=models.SET_NULL, related_name="enrollment_code"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["code_hash"], name="enrollment_code_hash_unique"),
            models.CheckConstraint(
                condition=Q(expires_at__gt=F("created_at")),
                name="enrollment_code_expires_after_creation",
            ),
        ]

    def __str__(self) -> str:
        return f"enrollment code of {self.owner} ({self.created_at:%Y-%m-%d %H:%M})"

    @classmethod
    def issue(cls, owner: Contributor) -> tuple["EnrollmentCode", str]:
        """A new code for `owner`: (row, plaintext). The plaintext is never stored."""
        now = timezone.now()
        row = cls(
            owner=owner,
            created_at=now,
            expires_at=now + timedelta(seconds=settings.ENROLLMENT_CODE_TTL_S),
        )
        plaintext = row.set_new_token()
        row.save(force_insert=True)
        return row, plaintext

    def spend(self) -> bool:
        """Mark the code used; True for exactly one caller, however many race."""
        return (
            EnrollmentCode.objects.filter(pk=self.pk, used_at__isnull=True).update(
                used_at=timezone.now()
            )
            == 1
        )


class ServiceToken(HashedToken):
    """A token for a network service, such as the job scheduler; stored hashed like node tokens."""

    SCHEME = "oms"

    class Scope(models.TextChoices):
        SCHEDULER = "scheduler", "job scheduler"

    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=20, choices=Scope.choices)
    token_prefix = models.CharField(max_length=24)
    token_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["token_prefix"], name="service_token_prefix_unique"),
            models.UniqueConstraint(fields=["token_hash"], name="service_token_hash_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.scope})"

    @classmethod
    def issue(cls, scope: str, name: str = "") -> tuple["ServiceToken", str]:
        """A new token for `scope`: (row, plaintext). The plaintext is never stored."""
        row = cls(name=name or scope, scope=scope)
        plaintext = row.set_new_token()
        row.save(force_insert=True)
        return row, plaintext

    @classmethod
    def authenticate(cls, token: str, scope: str) -> "ServiceToken | None":
        """The unrevoked token of `scope` that `token` is, or None."""
        return cls.holding(token, cls.objects.filter(scope=scope, revoked_at__isnull=True))


class ReviewFlag(models.Model):
    """What GPU and node flags share: a detail, when it opened and was last seen, and who
    cleared it when (an open flag has no `cleared_at`). Admins clear both kinds alike."""

    detail = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    cleared_at = models.DateTimeField(null=True, blank=True)
    cleared_by = models.ForeignKey(
        Contributor, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        abstract = True


class GpuFlag(ReviewFlag):
    """Something about a GPU that an admin should look at: it holds the GPU out of rewards
    until an admin clears it. Opened by what the GPU's own node reported (implausible
    telemetry) or by an admin; never by another node (a known uuid is not a weapon:
    `NodeFlag`)."""

    class Reason(models.TextChoices):
        IMPLAUSIBLE_TELEMETRY = "implausible_telemetry", "implausible telemetry"
        ADMIN_HOLD = "admin_hold", "held by an admin"

    gpu = models.ForeignKey(GPU, on_delete=models.CASCADE, related_name="flags")
    reason = models.CharField(max_length=30, choices=Reason.choices)
    reported_by = models.ForeignKey(
        Node,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The node whose report opened the flag.",
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["gpu", "reason", "reported_by"],
                condition=Q(cleared_at__isnull=True),
                name="gpuflag_one_open_per_gpu_reason_node",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_reason_display()}: {self.gpu.uuid}"


class NodeFlag(ReviewFlag):
    """Something a node did that an admin should review, e.g. reporting GPU uuids that belong
    to other nodes. It holds nothing out: the GPUs' owners keep earning, and the node's
    samples for those GPUs are refused one by one. One open flag per (node, reason); repeated
    reports update it."""

    class Reason(models.TextChoices):
        FOREIGN_GPU = "foreign_gpu", "reported GPUs of other nodes"

    MAX_UUIDS = 32  # uuids kept on one flag; the count goes on

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="flags")
    reason = models.CharField(max_length=30, choices=Reason.choices)
    gpu_uuids = models.JSONField(default=list, blank=True, help_text="The uuids it named.")
    reports = models.PositiveIntegerField(default=1, help_text="Reports that named them.")

    class Meta:
        ordering = ["-last_seen_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["node", "reason"],
                condition=Q(cleared_at__isnull=True),
                name="nodeflag_one_open_per_node_reason",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_reason_display()}: node {self.node_id}"
