"""The worker side of telemetry: turn stored batches into samples, live GPU state and rollups.

A worker claims pending batches (`drain`: as many as are waiting, up to INGEST_DRAIN_BATCHES;
`ingest`: one named batch) with `SELECT … FOR UPDATE SKIP LOCKED`, stores all their samples in
one statement ignoring (GPU, ts) duplicates, updates live state, adds to the rollups, and marks
the batches processed, all in one transaction. So:

- a worker killed half-way commits nothing; the batches stay pending and the next drain (or
  the sweeper) stores them whole;
- two workers never hold the same batch, and a batch stored twice (after a lost commit
  acknowledgement, say) adds nothing: the unique (GPU, ts) constraint ignores the copies;
- a batch the database refuses (it names a GPU deleted since it was accepted, say) fails
  alone: the others of its drain go through, and after INGEST_MAX_ATTEMPTS it waits for an
  admin instead of failing every drain.

Rollups of samples newer than everything stored for their GPU are added here, as deltas; a
GPU that got an older sample is noted as due instead, and `rollups.run` redoes its minutes from
the raw samples periodically.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec
from django.conf import settings
from django.db import DataError, IntegrityError, transaction
from django.db.models import F, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from contributors.models import TelemetryBatch
from contributors.telemetry import rollups
from contributors.telemetry.sql import backend
from contributors.telemetry.sql.common import LIVE_COLUMNS, SAMPLE_COLUMNS
from contributors.telemetry.validation import stored_sample
from portal import metrics

log = logging.getLogger(__name__)

# What rollups read of a sample, in the order `rollups.deltas_in_order` takes it.
_ROLLED_UP = ("ts", "utilization_gpu_pct", "memory_used_mib", "temperature_c", "power_w")


@dataclass
class _Claimed:
    pk: int
    node_id: int
    received_at: datetime
    clock_skew_s: float | None
    samples: list
    attempts: int


def drain(limit: int | None = None) -> tuple[int, int]:
    """Store up to `limit` pending batches (oldest first) that no other worker holds.

    Returns (batches, samples) taken; (0, 0) when nothing was waiting.
    """
    return _consume(TelemetryBatch.objects.all(), limit or settings.INGEST_DRAIN_BATCHES)


def ingest(batch_pk: int) -> int:
    """Store the samples of one pending batch; returns how many it held (0 if done or held)."""
    return _consume(TelemetryBatch.objects.filter(pk=batch_pk), 1)[1]


def _consume(queryset, limit: int) -> tuple[int, int]:
    """Claim up to `limit` batches of `queryset` and store them in one transaction; returns
    (batches taken, samples stored). If the database refuses the set, each batch is stored on
    its own, so that one bad batch is counted as failed and the rest go through."""
    with transaction.atomic():
        batches = _claim(queryset, limit)
        stored_batches, samples = _store_claimed(batches)
    metrics.batches_stored(stored_batches, samples)  # committed
    return len(batches), samples


def _store_claimed(batches: list[_Claimed]) -> tuple[int, int]:
    """(batches, samples) stored of the claimed `batches`."""
    if len(batches) > 1:
        try:
            with transaction.atomic():
                return len(batches), _store(batches)
        except (IntegrityError, DataError):
            log.warning("a set of %s batches was refused; storing them one by one", len(batches))
    stored_batches = samples = 0
    for batch in batches:
        try:
            with transaction.atomic():
                samples += _store([batch])
            stored_batches += 1
        except (IntegrityError, DataError) as exc:
            _count_failure(batch.pk, batch.attempts, f"{type(exc).__name__}: {exc}")
    return stored_batches, samples


def _claim(queryset, limit: int) -> list[_Claimed]:
    # The samples as the JSON text the database holds, decoded by msgspec: several times
    # faster than JSONField's json.loads, and this runs for every sample the portal takes.
    rows = (
        queryset.select_for_update(skip_locked=True)
        .filter(status=TelemetryBatch.Status.PENDING)
        .order_by("pk")
        .annotate(samples_text=Cast("samples", TextField()))
        .values_list("pk", "node_id", "received_at", "clock_skew_s", "samples_text", "attempts")[
            :limit
        ]
    )
    decode = msgspec.json.decode
    return [
        _Claimed(pk, node, received, skew, decode(samples), attempts)
        for pk, node, received, skew, samples, attempts in rows
    ]


def _store(batches: list[_Claimed]) -> int:
    """Everything a claimed set of batches changes, in the caller's transaction."""
    if not batches:
        return 0
    # Column-wise: the per-GPU work below reads them by index, no per-sample objects.
    items = [stored_sample(item) for batch in batches for item in batch.samples]
    received = [batch.received_at for batch in batches for _ in batch.samples]
    columns = {name: [item[i] for item in items] for i, name in enumerate(SAMPLE_COLUMNS)}
    columns["ts"] = [datetime.fromisoformat(ts) for ts in columns["ts"]]
    if columns["gpu_id"]:
        per_gpu: dict[int, list[int]] = {}  # GPU -> indexes of its samples
        for index, gpu in enumerate(columns["gpu_id"]):
            per_gpu.setdefault(gpu, []).append(index)
        newest = _update_live_state(columns, per_gpu, received)
        backend().insert_samples([b.pk for b in batches], columns)
        in_order = _first_copies_in_order(columns["ts"], per_gpu)
        _roll_up(columns, in_order, {gpu: row[0] for gpu, row in newest.items()})
        _accumulate(columns, in_order, newest)
    _update_nodes(batches)
    TelemetryBatch.objects.filter(pk__in=[b.pk for b in batches]).update(
        status=TelemetryBatch.Status.PROCESSED,
        processed_at=timezone.now(),
        attempts=F("attempts") + 1,
        # The samples now live in their own table; the batch keeps its answer and counts.
        samples=[],
    )
    return len(columns["gpu_id"])


def _update_live_state(
    columns: dict[str, list], per_gpu: dict[int, list[int]], received: list[datetime]
) -> dict[int, tuple]:
    """Each GPU's newest sample values and when it was last seen (when the newest batch that
    holds it came in), with the GPUs' rows locked; returns their newest sample before (its
    time, utilization, memory used and total, job) and MIG parent: `NEWEST_SAMPLE`.

    Batches may be processed out of order, so a GPU's values change only if this batch's
    newest sample is newer than the one shown.
    """
    ids = sorted(per_gpu)
    sql = backend()
    found = sql.gpus_locked(ids)
    if len(found) != len(ids):
        # Foreign keys are checked at commit (Django makes them deferrable), too late to tell
        # which batch named a GPU deleted since it was accepted: say it here, per drain.
        missing = sorted(set(ids) - {row[0] for row in found})
        raise IntegrityError(f"GPUs {missing} no longer exist")
    times = columns["ts"]
    rows = []
    for gpu in ids:
        newest = max(per_gpu[gpu], key=times.__getitem__)
        seen = max(received[j] for j in per_gpu[gpu])
        rows.append([gpu, *(columns[column][newest] for _, column in LIVE_COLUMNS), seen])
    sql.update_live_state(rows)
    return {row[0]: row[1:] for row in found}


def _first_copies_in_order(times: list, per_gpu: dict[int, list[int]]) -> dict[int, list[int]]:
    """Each GPU's sample indexes in time order, the first copy of a reading alone (as the
    table keeps it)."""
    in_order = {}
    for gpu, indexes in per_gpu.items():
        first: dict = {}
        for i in indexes:
            first.setdefault(times[i], i)
        in_order[gpu] = sorted(first.values(), key=times.__getitem__)
    return in_order


def _roll_up(columns: dict, in_order: dict[int, list[int]], previous: dict) -> None:
    """Minutes and hours for the new samples, while their GPUs' rows are locked.

    Samples newer than everything stored for their GPU (the usual case: agents report in
    order) are added to the rollups here, as deltas. A GPU that also got an older sample (a
    spool replayed after an outage, a batch resent) gets a note instead, and the periodic task
    redoes its minutes from the raw samples (`rollups.run`).
    """
    max_gap = timedelta(seconds=settings.COVERAGE_MAX_GAP_S)
    ts, util, used, temp, power = (columns[name] for name in _ROLLED_UP)
    deltas: dict[tuple[int, datetime], rollups.Agg] = {}
    notes = []
    for gpu, indexes in in_order.items():
        rows = [(ts[i], util[i], used[i], temp[i], power[i]) for i in indexes]
        last = previous.get(gpu)
        if last is not None and rows[0][0] <= last:
            notes.append((gpu, rows[0][0], rows[-1][0]))
            continue
        for minute, agg in rollups.deltas_in_order(last, rows, max_gap).items():
            deltas[(gpu, minute)] = agg
    rollups.add_deltas(deltas)
    if notes:
        notes.sort()
        backend().insert_due(notes)


def _accumulate(columns: dict, in_order: dict[int, list[int]], newest: dict[int, tuple]) -> None:
    """What settlement needs of the new samples (`rewards.accumulators`), while their GPUs'
    rows are locked: in-order samples are added, a GPU that got an older one marks the epochs
    it can change for a recount from raw samples."""
    from rewards import accumulators as acc

    ts, util, used, total, job = (
        columns[name]
        for name in ("ts", "utilization_gpu_pct", "memory_used_mib", "memory_total_mib", "job_id")
    )
    # The jobs the samples (and each GPU's newest before them) name, as attested now.
    named = {job[i] for indexes in in_order.values() for i in indexes} | {
        row[4] for row in newest.values()
    }
    named.discard("")
    deltas = acc.Deltas(acc.Grid.load(), acc.jobs_named(named) if named else {})
    for gpu, indexes in in_order.items():
        readings = [
            acc.Reading(acc.to_us(ts[i]), util[i], total[i] - used[i], job[i]) for i in indexes
        ]
        last_at, last_util, last_used, last_total, last_job, parent = newest[gpu]
        previous = None
        if last_at is not None:
            previous = acc.Reading(
                acc.to_us(last_at), last_util, (last_total or 0) - (last_used or 0), last_job
            )
            if readings[0].ts <= previous.ts:
                deltas.mark_dirty(gpu, readings[0].ts, max(readings[-1].ts, previous.ts))
                continue
        deltas.add_in_order(gpu, parent or gpu, previous, readings)
    acc.write(deltas)


def _update_nodes(batches: list[_Claimed]) -> None:
    """Each node's last_seen_at and clock skew from its newest batch, never moving back."""
    latest: dict[int, _Claimed] = {}
    for batch in batches:
        current = latest.get(batch.node_id)
        if current is None or batch.received_at > current.received_at:
            latest[batch.node_id] = batch
    backend().update_nodes(
        [(i, latest[i].received_at, latest[i].clock_skew_s) for i in sorted(latest)]
    )


def _count_failure(batch_pk: int, attempts: int, error: str) -> None:
    """One more failed attempt of a batch this worker holds (`attempts` before this one);
    after INGEST_MAX_ATTEMPTS it waits for an admin instead of failing every drain."""
    attempts += 1
    failed = attempts >= settings.INGEST_MAX_ATTEMPTS
    TelemetryBatch.objects.filter(pk=batch_pk).update(
        attempts=attempts,
        error=error[:2000],
        status=TelemetryBatch.Status.FAILED if failed else TelemetryBatch.Status.PENDING,
    )
    if failed:
        log.error("batch %s failed %s times, left for an admin: %s", batch_pk, attempts, error)


def record_failure(batch_pk: int, error: str) -> None:
    """Note a failed attempt of a pending batch that no drain holds now (the task that tried
    it failed outside the database's refusal, which `_consume` counts itself)."""
    with transaction.atomic():
        attempts = (
            TelemetryBatch.objects.select_for_update()
            .filter(pk=batch_pk, status=TelemetryBatch.Status.PENDING)
            .values_list("attempts", flat=True)
            .first()
        )
        if attempts is not None:
            _count_failure(batch_pk, attempts, error)


def stale_batch_ids(limit: int = 1000) -> list[int]:
    """Pending batches older than the sweep delay: their task was lost or is stuck."""
    cutoff = timezone.now() - timedelta(seconds=settings.INGEST_SWEEP_AFTER_S)
    return list(
        TelemetryBatch.objects.filter(status=TelemetryBatch.Status.PENDING, received_at__lt=cutoff)
        .order_by("received_at")
        .values_list("pk", flat=True)[:limit]
    )
