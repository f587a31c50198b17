"""Proof of GPU (agent/PROOF.md): the challenges a GPU was set, what came of each, the
exemptions admins granted, and the scheduler's memory probes."""

from __future__ import annotations

import secrets
import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from contributors.models.accounts import Contributor
from contributors.models.fleet import GPU, Node


class Challenge(models.Model):
    """One proof-of-GPU challenge for one physical GPU, from issue to result.

    Issued → delivered (the first telemetry answer or config that carried it; the commit
    deadline counts from then) → committed (a Merkle root; the rows to reveal are drawn only
    now) → revealed → passed or failed, decided by a worker. A challenge that misses a
    deadline fails with the reason the protocol names.
    """

    class Status(models.TextChoices):
        ISSUED = "issued", "issued"
        DELIVERED = "delivered", "delivered, waiting for the commit"
        COMMITTED = "committed", "committed, waiting for the reveal"
        REVEALED = "revealed", "revealed, being checked"
        PASSED = "passed", "passed"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "replaced by a newer challenge"

    class Reason(models.TextChoices):
        WRONG_ROW = "wrong_row", "a revealed row is not the product"
        BAD_PATH = "bad_path", "a revealed row does not lead to the committed root"
        LATE_COMMIT = "late_commit", "committed after the deadline"
        LATE_REVEAL = "late_reveal", "revealed late or not at all"
        NO_ANSWER = "no_answer", "never committed"
        SLOW_FOR_MODEL = "slow_for_model", "far slower than the model it claims to be"

    class Trigger(models.TextChoices):
        REGISTERED = "registered", "first registration"
        INVENTORY = "inventory", "inventory changed"
        NODE = "node", "another GPU of its node was added or changed"
        PERIODIC = "periodic", "at a random time"
        RETRY = "retry", "after a failure"
        ADMIN = "admin", "an admin asked"

    OPEN = (Status.ISSUED, Status.DELIVERED, Status.COMMITTED, Status.REVEALED)

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    gpu = models.ForeignKey(GPU, on_delete=models.CASCADE, related_name="challenges")
    node = models.ForeignKey(
        Node, on_delete=models.CASCADE, related_name="challenges", help_text="Who must answer."
    )
    trigger = models.CharField(max_length=12, choices=Trigger.choices)
    claimed_name = models.CharField(max_length=200, help_text="The model it claimed when issued.")
    claimed_memory_mib = models.PositiveIntegerField(help_text="The memory it claimed.")
    seed = models.CharField(max_length=64, default=secrets.token_hex, editable=False)
    n = models.PositiveIntegerField(help_text="Matrix size.")
    rounds = models.PositiveIntegerField()
    checks = models.PositiveSmallIntegerField(help_text="Rows drawn for the reveal.")
    expected_ops_per_s = models.FloatField(
        help_text="What the claimed model should reach on this work (int8 ops/s)."
    )
    commit_within_s = models.FloatField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ISSUED)
    reason = models.CharField(max_length=16, choices=Reason.choices, blank=True)
    detail = models.TextField(blank=True)
    issued_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    commit_deadline = models.DateTimeField(null=True, blank=True)
    committed_at = models.DateTimeField(null=True, blank=True)
    root = models.CharField(max_length=64, blank=True)
    reported_elapsed_s = models.FloatField(null=True, blank=True)
    reveal_rows = models.JSONField(default=list, blank=True, help_text="[[round, row], …]")
    reveal_deadline = models.DateTimeField(null=True, blank=True)
    revealed_at = models.DateTimeField(null=True, blank=True)
    revealed = models.JSONField(default=list, blank=True, help_text="The agent's reveal.")
    decided_at = models.DateTimeField(null=True, blank=True)
    measured_ops_per_s = models.FloatField(null=True, blank=True)
    issued_by = models.ForeignKey(
        Contributor, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-issued_at"]
        indexes = [
            models.Index(fields=["gpu", "-decided_at"], name="challenge_gpu_decided"),
            # The alert evaluator reads the challenges decided since its last look, every minute.
            models.Index(fields=["decided_at"], name="challenge_decided"),
            # The telemetry fast path asks whether a node has a challenge waiting for it.
            models.Index(
                fields=["node"],
                condition=Q(status__in=["issued", "delivered"]),
                name="challenge_waiting",
            ),
            models.Index(
                fields=["status", "commit_deadline"],
                condition=Q(status__in=["issued", "delivered", "committed", "revealed"]),
                name="challenge_open",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["gpu"],
                condition=Q(status__in=["issued", "delivered", "committed", "revealed"]),
                name="challenge_one_open_per_gpu",
            ),
        ]

    def __str__(self) -> str:
        return f"challenge {self.public_id} for {self.gpu.uuid}: {self.status}"

    @property
    def work_ops(self) -> int:
        return 2 * self.n**3 * self.rounds

    @property
    def expected_s(self) -> float:
        return self.work_ops / self.expected_ops_per_s

    @property
    def expected_tops(self) -> float:
        return self.expected_ops_per_s / 1e12

    @property
    def measured_tops(self) -> float | None:
        return None if self.measured_ops_per_s is None else self.measured_ops_per_s / 1e12

    @property
    def throughput_pct(self) -> float | None:
        ratio = self.throughput_ratio
        return None if ratio is None else 100 * ratio

    @property
    def throughput_ratio(self) -> float | None:
        if self.measured_ops_per_s is None:
            return None
        return self.measured_ops_per_s / self.expected_ops_per_s

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN


class Exemption(models.Model):
    """An admin's decision that a GPU earns without proving itself (hardware verified another
    way), with the reason on record. Revoking it sets `revoked_at`."""

    gpu = models.ForeignKey(GPU, on_delete=models.CASCADE, related_name="exemptions")
    reason = models.TextField()
    granted_by = models.ForeignKey(
        Contributor, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    granted_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-granted_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["gpu"], condition=Q(revoked_at__isnull=True), name="exemption_one_per_gpu"
            ),
        ]

    def __str__(self) -> str:
        return f"exemption of {self.gpu.uuid}"


class Probe(models.Model):
    """The network's scheduler allocated `allocated_mib` on the GPU through a real job at `at`
    (`ok`), or tried and failed. Idle units of the GPU use at most the last successful probe's
    memory while it is valid; a failed probe holds the GPU out until a later success."""

    gpu = models.ForeignKey(GPU, on_delete=models.CASCADE, related_name="probes")
    at = models.DateTimeField()
    allocated_mib = models.PositiveIntegerField()
    ok = models.BooleanField()
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["gpu", "-at"], name="probe_gpu_at")]

    def __str__(self) -> str:
        return f"probe of {self.gpu.uuid} at {self.at:%Y-%m-%d %H:%M}: {self.allocated_mib} MiB"
