"""Retention of telemetry: raw samples for days, minute rollups for months, hours for good.

On PostgreSQL raw samples live in one partition per UTC day (`contributors.partitions`): a day
wholly older than the cutoff goes as one DROP TABLE. What is left older than the cutoff (the
day straddling it, the DEFAULT partition; on SQLite, every old sample) and old minute rollups
are deleted GPU by GPU through the (gpu, ts) / (gpu, start) unique indexes, in chunks, so a
prune never scans the whole table and never holds long locks.
"""

from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from contributors import partitions
from contributors.models import GPU, GpuMinute, Sample, TelemetryBatch

GPU_CHUNK = 200


def prune(now=None) -> dict[str, int]:
    """Apply the retention settings; returns what went: samples and minutes deleted row by row,
    day partitions of samples dropped whole, processed batches."""
    now = now or timezone.now()
    raw_cutoff = now - timedelta(days=settings.RETENTION_RAW_DAYS)
    minute_cutoff = now - timedelta(days=settings.RETENTION_MINUTE_DAYS)
    batch_cutoff = now - timedelta(days=settings.RETENTION_BATCH_DAYS)
    removed = {"samples": 0, "minutes": 0, "batches": 0}
    removed["sample_days"] = len(partitions.drop_days_before(raw_cutoff))
    gpu_ids = list(GPU.objects.order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(gpu_ids), GPU_CHUNK):
        chunk = gpu_ids[start : start + GPU_CHUNK]
        old_samples = Sample.objects.filter(gpu_id__in=chunk, ts__lt=raw_cutoff)
        removed["samples"] += old_samples.delete()[0]
        removed["minutes"] += GpuMinute.objects.filter(
            gpu_id__in=chunk, start__lt=minute_cutoff
        ).delete()[0]
    # Only processed batches go: a pending one still holds samples nobody has stored.
    removed["batches"] = TelemetryBatch.objects.filter(
        Q(status=TelemetryBatch.Status.PROCESSED), received_at__lt=batch_cutoff
    ).delete()[0]
    return removed
