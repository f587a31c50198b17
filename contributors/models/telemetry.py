"""Telemetry as stored: accepted batches, samples, and their per-minute and per-hour rollups."""

from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from contributors.models.fleet import GPU, Node


class TelemetryBatch(models.Model):
    """One accepted telemetry request, kept verbatim until a worker has stored its samples.

    The API writes this row and answers 202; a worker turns `samples` into `Sample` rows and
    marks it processed in the same transaction. A crash anywhere before that commit leaves the
    row pending, and the sweeper asks for a drain again: nothing accepted is ever lost, and the
    unique (GPU, ts) constraint on samples makes a second run count nothing twice.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        PROCESSED = "processed", "processed"
        FAILED = "failed", "failed"

    # No index of its own on node, status or received_at: (node, batch_id) and (status,
    # received_at) serve those lookups (the drains, the sweeper, metrics, retention), and every
    # index is written twice per batch (accepted, then processed).
    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="batches", db_index=False)
    batch_id = models.UUIDField()
    received_at = models.DateTimeField(default=timezone.now)
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
    """One GPU reading at one instant; (GPU, ts) is unique, so a resent sample counts once.

    On PostgreSQL the table is partitioned by UTC day of `ts` (`contributors.partitions`), and
    its primary key there is (id, ts); `id` alone is unique in practice (one sequence).
    """

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
