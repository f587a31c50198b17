"""The worker side of telemetry: turn a stored batch into samples and live GPU state.

`ingest(batch_pk)` is safe to run any number of times, concurrently too: it locks the batch row,
does nothing unless the batch is still pending, inserts samples ignoring (GPU, ts) duplicates,
and marks the batch processed in the same transaction. A worker killed half-way commits nothing,
and the next run (a redelivery or the sweeper) does the whole batch once.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
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
            .values("node_id", "received_at", "clock_skew_s", "samples", "attempts")
            .first()
        )
        if batch is None:
            return 0
        rows = [_sample_row(item) for item in batch["samples"]]
        # Updating the GPUs' live state first also locks their rows, so two batches of the
        # same GPU (a swept one and the next, say) update its rollups one after the other.
        _update_live_state(rows, batch["received_at"])
        Sample.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)
        rollups.refresh(rows)
        Node.objects.filter(pk=batch["node_id"]).filter(
            Q(last_seen_at__isnull=True) | Q(last_seen_at__lt=batch["received_at"])
        ).update(last_seen_at=batch["received_at"], clock_skew_s=batch["clock_skew_s"])
        # The samples now live in their own table; the batch keeps its answer and counts.
        TelemetryBatch.objects.filter(pk=batch_pk).update(
            status=TelemetryBatch.Status.PROCESSED,
            processed_at=timezone.now(),
            attempts=batch["attempts"] + 1,
            samples=[],
        )
    return len(rows)


_LIVE = (
    ("last_sample_at", "ts", "timestamptz"),
    ("last_utilization_gpu_pct", "utilization_gpu_pct", "float8"),
    ("last_memory_used_mib", "memory_used_mib", "int8"),
    ("last_memory_total_mib", "memory_total_mib", "int8"),
    ("last_temperature_c", "temperature_c", "float8"),
    ("last_power_w", "power_w", "float8"),
    ("last_job_id", "job_id", "text"),
)


def _update_live_state(rows: list[Sample], received_at: datetime) -> None:
    """One UPDATE for all the batch's GPUs: newest sample values and when they were seen.

    Batches may be processed out of order, so a GPU's values change only if this batch's
    newest sample is newer than the one shown; every SET reads the row as it was before.
    (Raw SQL because the ORM spends more time building a CASE per GPU than the database
    spends running it.)
    """
    newest: dict[int, Sample] = {}
    for row in rows:
        if row.gpu_id not in newest or row.ts > newest[row.gpu_id].ts:
            newest[row.gpu_id] = row
    if not newest:
        return
    ops = connection.ops
    q = ops.quote_name
    postgres = connection.vendor == "postgresql"
    columns = ["id", *(attr for _, attr, _ in _LIVE)]
    params: list = []
    selects = []
    for index, gpu_id in enumerate(sorted(newest)):
        row = newest[gpu_id]
        values = [gpu_id, *(getattr(row, attr) for _, attr, _ in _LIVE)]
        values[1] = ops.adapt_datetimefield_value(values[1])
        params.extend(values)
        if index == 0 and postgres:
            types = ["int8", *(kind for _, _, kind in _LIVE)]
            casts = (f"CAST(%s AS {t}) AS {c}" for t, c in zip(types, columns, strict=True))
            selects.append("SELECT " + ", ".join(casts))
        elif index == 0:
            selects.append("SELECT " + ", ".join(f"%s AS {c}" for c in columns))
        else:
            selects.append("SELECT " + ", ".join(["%s"] * len(columns)))
    table = q(GPU._meta.db_table)
    newer = f"({table}.last_sample_at IS NULL OR {table}.last_sample_at < v.ts)"
    sets = [
        f"{q(field)} = CASE WHEN {newer} THEN v.{attr} ELSE {table}.{q(field)} END"
        for field, attr, _ in _LIVE
    ]
    seen = ops.adapt_datetimefield_value(received_at)
    sets.append(
        f"last_seen_at = CASE WHEN {table}.last_seen_at IS NULL OR {table}.last_seen_at < %s "
        f"THEN %s ELSE {table}.last_seen_at END"
    )
    sql = (
        f"UPDATE {table} SET {', '.join(sets)} "  # noqa: S608 - only our own names
        f"FROM ({' UNION ALL '.join(selects)}) AS v WHERE {table}.id = v.id"
    )
    # The SET clause's two placeholders come before the FROM clause's.
    with connection.cursor() as cursor:
        cursor.execute(sql, [seen, seen, *params])


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
