"""The worker side of telemetry: turn a stored batch into samples and live GPU state.

`ingest(batch_pk)` is safe to run any number of times, concurrently too: it locks the batch row,
does nothing unless the batch is still pending, inserts samples ignoring (GPU, ts) duplicates,
and marks the batch processed in the same transaction. A worker killed half-way commits nothing,
and the next run (a redelivery or the sweeper) does the whole batch once.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from contributors import rollups
from contributors.models import GPU, Node, Sample, TelemetryBatch

log = logging.getLogger(__name__)


def _sample_row(item: dict) -> Sample:
    return Sample(
        gpu_id=item["gpu"],
        ts=datetime.fromisoformat(item["ts"]),
        utilization_gpu_pct=item["util"],
        memory_used_mib=item["used"],
        memory_total_mib=item["total"],
        temperature_c=item["temp"],
        power_w=item["power"],
        job_id=item["job"],
    )


def ingest(batch_pk: int) -> int:
    """Store the samples of a pending batch; returns how many samples it held (0 if done)."""
    with transaction.atomic():
        batch = (
            TelemetryBatch.objects.select_for_update()
            .filter(pk=batch_pk, status=TelemetryBatch.Status.PENDING)
            .first()
        )
        if batch is None:
            return 0
        rows = [_sample_row(item) for item in batch.samples]
        # Lock this batch's GPUs (in a fixed order) so that two batches of the same GPU,
        # e.g. a swept one and the next, update its rollups one after the other.
        gpu_ids = sorted({row.gpu_id for row in rows})
        list(GPU.objects.select_for_update().filter(pk__in=gpu_ids).order_by("pk").values("pk"))
        Sample.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)
        rollups.refresh(rows)
        _update_live_state(rows, batch)
        batch.status = TelemetryBatch.Status.PROCESSED
        batch.processed_at = timezone.now()
        batch.attempts += 1
        count = len(batch.samples)
        # The samples now live in their own table; the batch keeps its answer and counts.
        batch.samples = []
        batch.save(update_fields=["status", "processed_at", "attempts", "samples"])
    return count


def _update_live_state(rows: list[Sample], batch: TelemetryBatch) -> None:
    newest: dict[int, Sample] = {}
    for row in rows:
        if row.gpu_id not in newest or row.ts > newest[row.gpu_id].ts:
            newest[row.gpu_id] = row
    for gpu_id, row in newest.items():
        # Batches may be processed out of order: only a newer sample replaces the live values.
        GPU.objects.filter(pk=gpu_id).filter(
            Q(last_sample_at__isnull=True) | Q(last_sample_at__lt=row.ts)
        ).update(
            last_sample_at=row.ts,
            last_utilization_gpu_pct=row.utilization_gpu_pct,
            last_memory_used_mib=row.memory_used_mib,
            last_memory_total_mib=row.memory_total_mib,
            last_temperature_c=row.temperature_c,
            last_power_w=row.power_w,
            last_job_id=row.job_id,
        )
    seen = Q(last_seen_at__isnull=True) | Q(last_seen_at__lt=batch.received_at)
    GPU.objects.filter(pk__in=newest).filter(seen).update(last_seen_at=batch.received_at)
    Node.objects.filter(pk=batch.node_id).filter(seen).update(
        last_seen_at=batch.received_at, clock_skew_s=batch.clock_skew_s
    )


def record_failure(batch_pk: int, error: str) -> None:
    """Note a failed attempt; after too many the batch waits for an admin instead of looping."""
    with transaction.atomic():
        batch = (
            TelemetryBatch.objects.select_for_update()
            .filter(pk=batch_pk, status=TelemetryBatch.Status.PENDING)
            .first()
        )
        if batch is None:
            return
        batch.attempts += 1
        batch.error = error[:2000]
        if batch.attempts >= settings.INGEST_MAX_ATTEMPTS:
            batch.status = TelemetryBatch.Status.FAILED
            log.error(
                "batch %s failed %s times, left for an admin: %s", batch.pk, batch.attempts, error
            )
        batch.save(update_fields=["attempts", "error", "status"])


def stale_batch_ids(limit: int = 1000) -> list[int]:
    """Pending batches older than the sweep delay: their task was lost or is stuck."""
    cutoff = timezone.now() - timedelta(seconds=settings.INGEST_SWEEP_AFTER_S)
    return list(
        TelemetryBatch.objects.filter(status=TelemetryBatch.Status.PENDING, received_at__lt=cutoff)
        .order_by("received_at")
        .values_list("pk", flat=True)[:limit]
    )
