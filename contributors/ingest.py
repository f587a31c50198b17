"""The worker side of telemetry: turn stored batches into samples and live GPU state.

A worker claims pending batches (`drain`: as many as are waiting, up to INGEST_DRAIN_BATCHES;
`ingest`: one named batch) with `SELECT … FOR UPDATE SKIP LOCKED`, stores all their samples in
one statement ignoring (GPU, ts) duplicates, updates live state, notes which rollups are due,
and marks the batches processed, all in one transaction. So:

- a worker killed half-way commits nothing; the batches stay pending and the next drain (or
  the sweeper) stores them whole;
- two workers never hold the same batch, and a batch stored twice (after a lost commit
  acknowledgement, say) adds nothing: the unique (GPU, ts) constraint ignores the copies.

Rollups are not done here: `contributors.rollups.run` redoes them periodically for all the
GPU time ranges noted as due, many batches at once (see that module).
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DataError, IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from contributors import rollups
from contributors.models import GPU, Node, RollupDue, Sample, TelemetryBatch
from contributors.telemetry import SAMPLE_FIELDS, stored_sample
from portal import db

log = logging.getLogger(__name__)

_SAMPLE_COLUMNS = (
    ("gpu_id", "gpu", "int8"),
    ("ts", "ts", "timestamptz"),
    ("utilization_gpu_pct", "util", "float8"),
    ("memory_used_mib", "used", "int4"),
    ("memory_total_mib", "total", "int4"),
    ("temperature_c", "temp", "float8"),
    ("power_w", "power", "float8"),
    ("job_id", "job", "text"),
)


@dataclass
class _Claimed:
    pk: int
    node_id: int
    received_at: datetime
    clock_skew_s: float | None
    samples: list[dict]
    attempts: int


def drain(limit: int | None = None) -> tuple[int, int]:
    """Store up to `limit` pending batches (oldest first) that no other worker holds.

    Returns (batches, samples) taken; (0, 0) when nothing was waiting. If the database refuses
    the set (a GPU deleted since its batch was accepted, say), each batch is stored on its own
    so that one bad batch is counted as failed and the rest go through.
    """
    limit = limit or settings.INGEST_DRAIN_BATCHES
    with transaction.atomic():
        batches = _claim(TelemetryBatch.objects.all(), limit)
        try:
            with transaction.atomic():
                return len(batches), _store(batches)
        except (IntegrityError, DataError):
            log.warning("a set of %s batches was refused; storing them one by one", len(batches))
        stored = 0
        for batch in batches:
            try:
                with transaction.atomic():
                    stored += _store([batch])
            except (IntegrityError, DataError) as exc:
                _count_failure(batch, f"{type(exc).__name__}: {exc}")
        return len(batches), stored


def ingest(batch_pk: int) -> int:
    """Store the samples of one pending batch; returns how many it held (0 if done or held)."""
    with transaction.atomic():
        return _store(_claim(TelemetryBatch.objects.filter(pk=batch_pk), 1))


def _claim(queryset, limit: int) -> list[_Claimed]:
    rows = (
        queryset.select_for_update(skip_locked=True)
        .filter(status=TelemetryBatch.Status.PENDING)
        .order_by("pk")
        .values_list("pk", "node_id", "received_at", "clock_skew_s", "samples", "attempts")[:limit]
    )
    return [_Claimed(*row) for row in rows]


def _store(batches: list[_Claimed]) -> int:
    """Everything a claimed set of batches changes, in the caller's transaction."""
    if not batches:
        return 0
    # Column-wise: the per-GPU work below reads them by index, no per-sample objects.
    items = [stored_sample(item) for batch in batches for item in batch.samples]
    received = [batch.received_at for batch in batches for _ in batch.samples]
    columns = {key: [item[i] for item in items] for i, key in enumerate(SAMPLE_FIELDS)}
    texts = columns["ts"]
    columns["ts"] = [datetime.fromisoformat(ts) for ts in texts]
    if columns["gpu"]:
        per_gpu: dict[int, list[int]] = {}  # GPU -> indexes of its samples
        for index, gpu in enumerate(columns["gpu"]):
            per_gpu.setdefault(gpu, []).append(index)
        times = columns["ts"]
        newest = {gpu: max(indexes, key=times.__getitem__) for gpu, indexes in per_gpu.items()}
        live = {
            # each GPU was last seen when the newest batch that holds it came in
            gpu: {
                **{key: columns[key][i] for key in columns},
                "seen": max(received[j] for j in per_gpu[gpu]),
            }
            for gpu, i in newest.items()
        }
        previous = _update_live_state(live)
        values = [columns[key] for _, key, _ in _SAMPLE_COLUMNS]
        if connection.vendor == "postgresql":
            values[1] = texts  # ISO 8601 as the API wrote them: PostgreSQL reads them as they are
        _insert(Sample._meta.db_table, _SAMPLE_COLUMNS, values, conflict="(gpu_id, ts) DO NOTHING")
        _roll_up(columns, per_gpu, previous)
    _update_nodes(batches)
    TelemetryBatch.objects.filter(pk__in=[b.pk for b in batches]).update(
        status=TelemetryBatch.Status.PROCESSED,
        processed_at=timezone.now(),
        attempts=F("attempts") + 1,
        # The samples now live in their own table; the batch keeps its answer and counts.
        samples=[],
    )
    return len(columns["gpu"])


def _roll_up(columns: dict, per_gpu: dict[int, list[int]], previous: dict) -> None:
    """Minutes and hours for the new samples, while their GPUs' rows are locked.

    Samples newer than everything stored for their GPU (the usual case: agents report in
    order) are added to the rollups here, as deltas. A GPU that also got an older sample (a
    spool replayed after an outage, a batch resent) gets a note instead, and the periodic task
    redoes its minutes from the raw samples (`contributors.rollups.run`).
    """
    max_gap = timedelta(seconds=settings.COVERAGE_MAX_GAP_S)
    deltas: dict[tuple[int, datetime], rollups.Agg] = {}
    notes = []
    for gpu, indexes in per_gpu.items():
        rows = sorted(
            {
                columns["ts"][i]: (
                    columns["ts"][i],
                    columns["util"][i],
                    columns["used"][i],
                    columns["temp"][i],
                    columns["power"][i],
                )
                for i in reversed(indexes)  # the first copy of a reading wins, as in the table
            }.values()
        )
        last = previous.get(gpu)
        if last is not None and rows[0][0] <= last:
            notes.append((gpu, rows[0][0], rows[-1][0]))
            continue
        for minute, agg in rollups.deltas_in_order(last, rows, max_gap).items():
            deltas[(gpu, minute)] = agg
    rollups.add_deltas(deltas)
    if notes:
        notes.sort()
        _insert(
            RollupDue._meta.db_table,
            (("gpu_id", None, "int8"), ("first_ts", None, "timestamptz"),
             ("last_ts", None, "timestamptz")),
            [list(column) for column in zip(*notes, strict=True)],
        )  # fmt: skip


def _adapt(value, kind: str):
    if kind == "timestamptz" and value is not None:
        return connection.ops.adapt_datetimefield_value(value)
    return value


def _insert(table: str, columns, values: list[list], conflict: str = "") -> None:
    """INSERT many rows, given column by column, in one statement: on PostgreSQL from one JSON
    parameter (`portal.db.json_rows`; a fixed statement whatever the row count, so it is
    prepared once), executemany elsewhere."""
    if not values or not values[0]:
        return
    q = connection.ops.quote_name
    names = ", ".join(q(name) for name, _, _ in columns)
    tail = f" ON CONFLICT {conflict}" if conflict else ""
    kinds = [kind for _, _, kind in columns]
    if connection.vendor == "postgresql":
        source = db.json_rows([(q(name), kind) for name, _, kind in columns])
        db.fetch(
            f"INSERT INTO {q(table)} ({names}) SELECT * FROM {source}{tail}",  # noqa: S608
            [db.rows_json(zip(*values, strict=True))],
        )
        return
    placeholders = ", ".join(["%s"] * len(columns))
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {q(table)} ({names}) VALUES ({placeholders}){tail}",  # noqa: S608
            [
                [_adapt(v, k) for v, k in zip(row, kinds, strict=True)]
                for row in zip(*values, strict=True)
            ],
        )


_LIVE = (
    ("last_sample_at", "ts", "timestamptz"),
    ("last_utilization_gpu_pct", "util", "float8"),
    ("last_memory_used_mib", "used", "int8"),
    ("last_memory_total_mib", "total", "int8"),
    ("last_temperature_c", "temp", "float8"),
    ("last_power_w", "power", "float8"),
    ("last_job_id", "job", "text"),
)


def _update_live_state(newest: dict[int, dict]) -> dict[int, datetime]:
    """One UPDATE for all the GPUs: newest sample values and when they were seen.

    Batches may be processed out of order, so a GPU's values change only if this batch's
    newest sample is newer than the one shown; every SET reads the row as it was before.
    On PostgreSQL the rows are locked first in id order, so two workers updating overlapping
    GPUs wait for each other instead of deadlocking.
    """
    ops = connection.ops
    q = ops.quote_name
    table = q(GPU._meta.db_table)
    ids = sorted(newest)
    postgres = connection.vendor == "postgresql"
    newer = f"({table}.last_sample_at IS NULL OR {table}.last_sample_at < v.ts)"
    sets = [
        f"{q(field)} = CASE WHEN {newer} THEN v.{key} ELSE {table}.{q(field)} END"
        for field, key, _ in _LIVE
    ]
    sets.append(
        f"last_seen_at = CASE WHEN {table}.last_seen_at IS NULL OR {table}.last_seen_at < v.seen "
        f"THEN v.seen ELSE {table}.last_seen_at END"
    )
    columns = [("id", "int8"), *((key, kind) for _, key, kind in _LIVE), ("seen", "timestamptz")]
    rows = [
        [gpu_id, *(newest[gpu_id][key] for _, key, _ in _LIVE), newest[gpu_id]["seen"]]
        for gpu_id in ids
    ]
    if postgres:
        found = db.fetch(
            f"SELECT id, last_sample_at FROM {table} WHERE id = ANY(%s) "  # noqa: S608
            "ORDER BY id FOR UPDATE",
            [ids],
        )
    else:
        found = list(GPU.objects.filter(pk__in=ids).values_list("pk", "last_sample_at"))
    if len(found) != len(ids):
        # Foreign keys are checked at commit (Django makes them deferrable), too late to tell
        # which batch named a GPU deleted since it was accepted: say it here, per drain.
        missing = sorted(set(ids) - {row[0] for row in found})
        raise IntegrityError(f"GPUs {missing} no longer exist")
    update = f"UPDATE {table} SET {', '.join(sets)} FROM {{source}} WHERE {table}.id = v.id"  # noqa: S608
    if postgres:
        db.fetch(update.format(source=db.json_rows(columns)), [db.rows_json(rows)])
        return dict(found)
    # SQLite: the rows as a UNION ALL of SELECTs, in chunks (it allows 500 terms a compound).
    kinds = [kind for _, kind in columns]
    first = "SELECT " + ", ".join(f"%s AS {name}" for name, _ in columns)
    rest = "SELECT " + ", ".join(["%s"] * len(columns))
    for start in range(0, len(rows), 400):
        chunk = rows[start : start + 400]
        source = "(" + " UNION ALL ".join([first] + [rest] * (len(chunk) - 1)) + ") AS v"
        params = [_adapt(v, k) for row in chunk for v, k in zip(row, kinds, strict=True)]
        db.fetch(update.format(source=source), params)
    return dict(found)


def _update_nodes(batches: list[_Claimed]) -> None:
    """Each node's last_seen_at and clock skew from its newest batch, never moving back."""
    latest: dict[int, _Claimed] = {}
    for batch in batches:
        current = latest.get(batch.node_id)
        if current is None or batch.received_at > current.received_at:
            latest[batch.node_id] = batch
    ops = connection.ops
    table = ops.quote_name(Node._meta.db_table)
    if connection.vendor == "postgresql":
        ids = sorted(latest)
        # Locked in id order first, as the GPUs are: two drains never wait on each other in a
        # circle.
        db.fetch(f"SELECT id FROM {table} WHERE id = ANY(%s) ORDER BY id FOR UPDATE", [ids])  # noqa: S608
        source = db.json_rows([("id", "int8"), ("seen", "timestamptz"), ("skew", "float8")])
        db.fetch(
            f"UPDATE {table} SET last_seen_at = v.seen, clock_skew_s = v.skew "  # noqa: S608
            f"FROM {source} WHERE {table}.id = v.id "
            f"AND ({table}.last_seen_at IS NULL OR {table}.last_seen_at < v.seen)",
            [db.rows_json((i, latest[i].received_at, latest[i].clock_skew_s) for i in ids)],
        )
        return
    with connection.cursor() as cursor:
        for node_id, batch in sorted(latest.items()):
            seen = ops.adapt_datetimefield_value(batch.received_at)
            cursor.execute(
                f"UPDATE {table} SET last_seen_at = %s, clock_skew_s = %s "  # noqa: S608
                "WHERE id = %s AND (last_seen_at IS NULL OR last_seen_at < %s)",
                [seen, batch.clock_skew_s, node_id, seen],
            )


def _count_failure(batch: _Claimed, error: str) -> None:
    """Within a drain: one more failed attempt for a batch it holds (see `record_failure`)."""
    attempts = batch.attempts + 1
    failed = attempts >= settings.INGEST_MAX_ATTEMPTS
    TelemetryBatch.objects.filter(pk=batch.pk).update(
        attempts=attempts,
        error=error[:2000],
        status=TelemetryBatch.Status.FAILED if failed else TelemetryBatch.Status.PENDING,
    )
    if failed:
        log.error("batch %s failed %s times, left for an admin: %s", batch.pk, attempts, error)


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
