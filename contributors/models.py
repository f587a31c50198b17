"""The people and machines of the network: contributors, their wallets, nodes and GPUs."""

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import F, Q
from django.utils import timezone

from contributors import tokens
from contributors.addresses import checksummed


def validate_eth_address(value: str) -> None:
    if checksummed(value) is None:
        raise ValidationError(f"{value!r} is not an Ethereum address (or its checksum is wrong).")


def is_recent(seen_at, now=None) -> bool:
    """Seen within 3 report intervals: the network's definition of online (DESIGN.md)."""
    from django.conf import settings

    if seen_at is None:
        return False
    now = now or timezone.now()
    return (now - seen_at).total_seconds() <= 3 * settings.AGENT_REPORT_INTERVAL_S


class Contributor(AbstractUser):
    """A person who shares GPUs with the network (or an admin who runs it).

    Contributors sign in with a wallet signature, so they have no usable password; their
    `username` is the address of the wallet they first signed in with. Staff accounts created
    with `createsuperuser` sign in to the admin with a password as usual.
    """

    class Meta:
        db_table = "contributors_contributor"
        verbose_name = "contributor"

    def __str__(self) -> str:
        return self.username

    @property
    def payout_wallet(self) -> "Wallet | None":
        return self.wallets.filter(is_payout=True).first()


class Wallet(models.Model):
    """An Ethereum account a contributor proved they control; one of them receives payouts."""

    contributor = models.ForeignKey(Contributor, on_delete=models.CASCADE, related_name="wallets")
    address = models.CharField(
        max_length=42,
        validators=[validate_eth_address],
        help_text="EIP-55 checksummed address.",
    )
    linked_at = models.DateTimeField(default=timezone.now)
    is_payout = models.BooleanField(
        default=False, help_text="Claims pay this wallet. Exactly one per contributor."
    )

    class Meta:
        ordering = ["linked_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["address"], name="wallet_address_unique"),
            models.UniqueConstraint(
                fields=["contributor"],
                condition=Q(is_payout=True),
                name="wallet_one_payout_per_contributor",
            ),
            models.CheckConstraint(
                condition=Q(address__startswith="0x"), name="wallet_address_hex_prefixed"
            ),
        ]

    def __str__(self) -> str:
        return self.address

    def save(self, *args, **kwargs) -> None:
        # One spelling per account, so the unique constraint also holds across letter case.
        if self.address and checksummed(self.address):
            self.address = checksummed(self.address)
        super().save(*args, **kwargs)

    @transaction.atomic
    def make_payout(self) -> None:
        """Make this the contributor's payout wallet, and no other."""
        Wallet.objects.filter(contributor_id=self.contributor_id, is_payout=True).exclude(
            pk=self.pk
        ).update(is_payout=False)
        Wallet.objects.filter(pk=self.pk).update(is_payout=True)
        self.is_payout = True


class Node(models.Model):
    """A machine running the OmniTensor agent; it posts telemetry with its own token."""

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

    def set_new_token(self) -> str:
        """Give the node a fresh token and return it; the old one stops working on save."""
        issued = tokens.issue()
        self.token_prefix = issued.prefix
        self.token_hash = issued.digest
        return issued.plaintext

    @classmethod
    def authenticate(cls, token: str) -> "Node | None":
        """The node holding `token` (revoked ones included: callers say 'revoked'), or None."""
        prefix = tokens.split_prefix(token)
        if prefix is None:
            return None
        node = cls.objects.filter(token_prefix=prefix).first()
        if node is None or not tokens.matches(token, node.token_hash):
            return None
        return node

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


class SignInNonce(models.Model):
    """A nonce the portal issued for an EIP-4361 message; a signature spends it exactly once."""

    nonce = models.CharField(max_length=64)
    issued_at = models.DateTimeField(default=timezone.now, db_index=True)
    consumed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["nonce"], name="signin_nonce_unique")]

    def __str__(self) -> str:
        return self.nonce

    def consume(self) -> bool:
        """Spend the nonce; True for exactly one caller, however many race."""
        now = timezone.now()
        won = SignInNonce.objects.filter(pk=self.pk, consumed_at__isnull=True).update(
            consumed_at=now
        )
        return won == 1


class EnrollmentCode(models.Model):
    """A single-use code that lets one agent enroll one machine for its owner, for an hour.

    Only the SHA-256 of the code is kept: the code itself is shown once to the contributor.
    """

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
        from datetime import timedelta

        from django.conf import settings

        plaintext = tokens.issue("enr").plaintext
        now = timezone.now()
        row = cls.objects.create(
            owner=owner,
            code_hash=tokens.digest(plaintext),
            created_at=now,
            expires_at=now + timedelta(seconds=settings.ENROLLMENT_CODE_TTL_S),
        )
        return row, plaintext

    def spend(self) -> bool:
        """Mark the code used; True for exactly one caller, however many race."""
        return (
            EnrollmentCode.objects.filter(pk=self.pk, used_at__isnull=True).update(
                used_at=timezone.now()
            )
            == 1
        )


class ServiceToken(models.Model):
    """A token for a network service, such as the job scheduler; stored hashed like node tokens."""

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
        issued = tokens.issue("oms")
        row = cls.objects.create(
            name=name or scope,
            scope=scope,
            token_prefix=issued.prefix,
            token_hash=issued.digest,
        )
        return row, issued.plaintext

    @classmethod
    def authenticate(cls, token: str, scope: str) -> "ServiceToken | None":
        prefix = tokens.split_prefix(token, scheme="oms")
        if prefix is None:
            return None
        row = cls.objects.filter(token_prefix=prefix, scope=scope, revoked_at__isnull=True).first()
        if row is None or not tokens.matches(token, row.token_hash):
            return None
        return row


class TelemetryBatch(models.Model):
    """One accepted telemetry request, kept verbatim until a worker has stored its samples.

    The API writes this row and answers 202; a worker turns `samples` into `Sample` rows and
    marks it processed in the same transaction. A crash anywhere before that commit leaves the
    row pending, and the sweeper enqueues it again: nothing accepted is ever lost, and the
    unique (GPU, ts) constraint on samples makes a second run count nothing twice.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        PROCESSED = "processed", "processed"
        FAILED = "failed", "failed"

    # No index of its own on node or status: (node, batch_id) and (status, received_at) serve
    # those lookups, and every index is written twice per batch (accepted, then processed).
    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="batches", db_index=False)
    batch_id = models.UUIDField()
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    clock_skew_s = models.FloatField(
        null=True, blank=True, help_text="Agent clock minus portal clock, seconds (approximate)."
    )
    samples = models.JSONField(help_text="Accepted samples, normalised, awaiting a worker.")
    sample_count = models.PositiveIntegerField(default=0)
    response = models.JSONField(help_text="The first answer, given again to a replay.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    processed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        verbose_name_plural = "telemetry batches"
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(fields=["node", "batch_id"], name="batch_unique_per_node"),
        ]
        indexes = [
            models.Index(fields=["status", "received_at"], name="batch_status_received"),
        ]

    def __str__(self) -> str:
        return f"batch {self.batch_id} of {self.node_id} ({self.status})"


class Sample(models.Model):
    """One GPU reading at one instant; (GPU, ts) is unique, so a resent sample counts once."""

    # The unique (gpu, ts) index serves every lookup by GPU; a second index on gpu alone would
    # only cost another write per sample, ten thousand a second at the design target.
    gpu = models.ForeignKey(GPU, on_delete=models.CASCADE, related_name="samples", db_index=False)
    ts = models.DateTimeField()
    utilization_gpu_pct = models.FloatField(null=True, blank=True)
    memory_used_mib = models.PositiveIntegerField()
    memory_total_mib = models.PositiveIntegerField()
    temperature_c = models.FloatField(null=True, blank=True)
    power_w = models.FloatField(null=True, blank=True)
    job_id = models.CharField(max_length=128, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["gpu", "ts"], name="sample_unique_gpu_ts"),
            models.CheckConstraint(
                condition=Q(memory_used_mib__lte=F("memory_total_mib")),
                name="sample_memory_used_within_total",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.gpu_id} @ {self.ts.isoformat()}"


class GpuFlag(models.Model):
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
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    cleared_at = models.DateTimeField(null=True, blank=True)
    cleared_by = models.ForeignKey(
        Contributor, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
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


class NodeFlag(models.Model):
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
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    cleared_at = models.DateTimeField(null=True, blank=True)
    cleared_by = models.ForeignKey(
        Contributor, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

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


class _Rollup(models.Model):
    """Aggregates of one GPU over one period, kept additive so the worker can maintain them.

    Averages are `sum_* / n_*` (a null reading adds to neither); maxima only grow because samples
    are only ever added; `online_s` is the covered time (DESIGN.md "Coverage") inside the period.
    """

    # Served by the unique (gpu, start) index.
    gpu = models.ForeignKey(GPU, on_delete=models.CASCADE, related_name="+", db_index=False)
    start = models.DateTimeField()
    samples = models.PositiveIntegerField(default=0)
    online_s = models.FloatField(default=0)
    n_util = models.PositiveIntegerField(default=0)
    sum_util = models.FloatField(default=0)
    max_util = models.FloatField(null=True)
    sum_mem = models.FloatField(default=0)
    max_mem = models.PositiveIntegerField(null=True)
    n_temp = models.PositiveIntegerField(default=0)
    sum_temp = models.FloatField(default=0)
    max_temp = models.FloatField(null=True)
    n_power = models.PositiveIntegerField(default=0)
    sum_power = models.FloatField(default=0)
    max_power = models.FloatField(null=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.gpu_id} @ {self.start.isoformat()}"


class GpuMinute(_Rollup):
    """Per-minute rollup of a GPU's samples (kept ROLLUP_MINUTE_DAYS days)."""

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["gpu", "start"], name="gpuminute_unique_gpu_start")
        ]


class GpuHour(_Rollup):
    """Per-hour rollup of a GPU's samples (kept for good)."""

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["gpu", "start"], name="gpuhour_unique_gpu_start")
        ]


class RollupDue(models.Model):
    """Samples of a GPU between two times were stored; its rollups there are not yet redone.

    Written in the transaction that stores the samples, consumed by the periodic rollup task
    in the transaction that rewrites the rollups: a crash of either leaves the row, so no
    stored sample is ever missing from the rollups for longer than a few runs.
    """

    gpu = models.ForeignKey(GPU, on_delete=models.CASCADE, related_name="+")
    first_ts = models.DateTimeField()
    last_ts = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.gpu_id}: {self.first_ts.isoformat()} .. {self.last_ts.isoformat()}"
