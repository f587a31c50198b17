"""What both databases run alike, and the column lists every statement takes from the models.

Column lists and their types come from the models' `_meta`: a column added to `Sample` (or to
a rollup) reaches these statements with its migration, and nobody keeps a second list.
"""

import functools

from django.db import connection

from contributors.models import GPU, Challenge, GpuMinute, Node, Sample, TelemetryBatch
from portal.lib import db


def columns_of(model, *leave_out: str) -> tuple[str, ...]:
    """A model's columns but its id (and `leave_out`), in the model's order."""
    return tuple(
        f.attname
        for f in model._meta.concrete_fields
        if not f.primary_key and f.attname not in leave_out
    )


def in_model_order(model, names: set[str]) -> tuple[str, ...]:
    # Model.from_db takes values in the order of the model's fields.
    return tuple(f.attname for f in model._meta.concrete_fields if f.attname in names)


def field(model, column: str):
    return next(f for f in model._meta.concrete_fields if f.attname == column)


def is_time(model, column: str) -> bool:
    return field(model, column).get_internal_type() == "DateTimeField"


SAMPLE_COLUMNS = columns_of(Sample)
# A GPU's live state is its newest sample: each `last_<column>` of GPU, the time as
# `last_sample_at` (the GPU itself and columns GPU does not mirror are left out).
LIVE_COLUMNS = tuple(
    (gpu_column, column)
    for column in SAMPLE_COLUMNS
    for gpu_column in ["last_sample_at" if column == "ts" else f"last_{column}"]
    if any(f.attname == gpu_column for f in GPU._meta.concrete_fields)
)
# What the drains read of a GPU before storing its samples: its newest sample so far, which
# the accumulators counted up to ts + max_gap (`rewards.accumulators`), and its MIG parent.
NEWEST_SAMPLE = ("id", "last_sample_at", "last_utilization_gpu_pct", "last_memory_used_mib",
                 "last_memory_total_mib", "last_job_id", "mig_parent_id")  # fmt: skip
# Rollup aggregates: maxima (`max_*`) keep the larger value, everything else adds up.
ROLLUP_COLUMNS = columns_of(GpuMinute, "gpu_id", "start")
ROLLUP_MAXIMA = frozenset(c for c in ROLLUP_COLUMNS if c.startswith("max_"))
# What the telemetry path reads of a token's node and its GPUs (`Statements.agent_rows`).
AGENT_NODE_COLUMNS = in_model_order(Node, {"id", "name", "token_hash"})
AGENT_GPU_COLUMNS = in_model_order(
    GPU,
    {"id", "node_id", "uuid", "name", "memory_total_mib", "driver_version", "pci_bus_id",
     "mig_parent_id", "committed_memory_mib", "unrated"},
)  # fmt: skip
BATCH_COLUMNS = columns_of(TelemetryBatch)


def q(name: str) -> str:
    return connection.ops.quote_name(name)


def table(model) -> str:
    return q(model._meta.db_table)


def _batch_kind(column: str) -> str:
    kind = field(TelemetryBatch, column).get_internal_type()
    return kind if kind in ("DateTimeField", "JSONField", "UUIDField") else ""


_BATCH_KINDS = [(column, _batch_kind(column)) for column in BATCH_COLUMNS]


def _batch_values(batch, json_value) -> list:
    """The row's values as Django's fields would send them, without building a model instance
    on the hottest path (JSON through the backend's `json_value`)."""
    ops, native_uuid = connection.ops, connection.features.has_native_uuid_field
    values = []
    for column, kind in _BATCH_KINDS:
        value = getattr(batch, column)
        if kind == "DateTimeField":
            value = ops.adapt_datetimefield_value(value)
        elif kind == "JSONField":
            value = json_value(value)
        elif kind == "UUIDField" and not native_uuid:
            value = value.hex
        values.append(value)
    return values


def _first(rows: list[tuple]):
    return rows[0][0] if rows else None


class Statements:
    """The telemetry pipeline's hand-written SQL; `backend()` gives the one for the database in
    use. Statements that are the same on both databases live here."""

    vendor = ""

    def json_value(self, value):
        """A JSON column's parameter, as Django's JSONField sends it."""
        return connection.ops.adapt_json_value(value, None)

    def agent_rows(self, token_prefix: str) -> list[tuple]:
        """The node holding the token prefix with its GPUs, one LEFT JOIN: rows of
        AGENT_NODE_COLUMNS, `revoked`, AGENT_GPU_COLUMNS (the GPU part None for a node without
        any). Only plain columns (no dates), so the rows need no database converters, and
        `revoked` is computed by the database."""
        return db.fetch(self._agent_rows_sql(), [token_prefix])

    @functools.cache  # noqa: B019 - one instance per database, kept for good
    def _agent_rows_sql(self) -> str:
        columns = [f"n.{q(c)}" for c in AGENT_NODE_COLUMNS] + ["n.revoked_at IS NOT NULL"]
        columns += [f"g.{q(c)}" for c in AGENT_GPU_COLUMNS]
        return (
            f"SELECT {', '.join(columns)} FROM {table(Node)} n "  # noqa: S608 - our names
            f"LEFT JOIN {table(GPU)} g ON g.node_id = n.id "
            "WHERE n.token_prefix = %s ORDER BY g.id"
        )

    def insert_batch(self, batch, guard: tuple[str, list[int]] | None = None) -> int | None:
        """INSERT `batch` (attributes named as TelemetryBatch's columns) unless its node already
        has that batch_id; the new id, or None if nothing was inserted.

        One statement in autocommit (no savepoint, no separate existence check): the unique
        constraint decides, which also settles two copies racing in at once. With `guard`
        (token digest, GPU ids) it also inserts nothing unless the node still holds that token,
        is not revoked, owns those GPUs and has no proof-of-GPU challenge waiting for its commit
        (the full path answers with it); None then cannot tell a replay from a failed guard.
        """
        values = _batch_values(batch, self.json_value)
        if guard is None:
            return _first(db.fetch(self._insert_batch_sql(None), values))
        digest, gpu_ids = guard
        values += [batch.node_id, digest, batch.node_id, *gpu_ids, len(gpu_ids), batch.node_id]
        return _first(db.fetch(self._insert_batch_sql(len(gpu_ids)), values))

    @functools.cache  # noqa: B019 - one instance per database, kept for good
    def _insert_batch_sql(self, guarded_gpus: int | None) -> str:
        placeholders = ", ".join(["%s"] * len(BATCH_COLUMNS))
        source = f"VALUES ({placeholders})"
        if guarded_gpus is not None:
            owned = ", ".join(["%s"] * guarded_gpus) or "NULL"
            source = (
                f"SELECT {placeholders} WHERE EXISTS ("  # noqa: S608 - our names
                f"SELECT 1 FROM {table(Node)} WHERE id = %s AND token_hash = %s "
                "AND revoked_at IS NULL) "
                f"AND (SELECT count(*) FROM {table(GPU)} WHERE node_id = %s AND id IN ({owned})) "
                f"= %s AND NOT EXISTS (SELECT 1 FROM {table(Challenge)} WHERE node_id = %s "
                "AND status IN ('issued', 'delivered'))"
            )
        return (
            f"INSERT INTO {table(TelemetryBatch)} ({', '.join(q(c) for c in BATCH_COLUMNS)}) "
            f"{source} "
            f"ON CONFLICT ({q('node_id')}, {q('batch_id')}) DO NOTHING RETURNING {q('id')}"
        )

    @staticmethod
    def live_state_sets(gpu: str) -> str:
        """The SET list of the live-state UPDATE, reading `v` (id, sample columns, seen): a
        GPU's values change only if `v` is newer than what it shows, and every SET reads the
        row as it was before."""
        newer = f"({gpu}.last_sample_at IS NULL OR {gpu}.last_sample_at < v.ts)"
        sets = [
            f"{q(target)} = CASE WHEN {newer} THEN v.{column} ELSE {gpu}.{q(target)} END"
            for target, column in LIVE_COLUMNS
        ]
        sets.append(
            f"last_seen_at = CASE WHEN {gpu}.last_seen_at IS NULL OR {gpu}.last_seen_at < v.seen "
            f"THEN v.seen ELSE {gpu}.last_seen_at END"
        )
        return ", ".join(sets)

    def rollup_upsert(self, model, greatest: str) -> str:
        """INSERT … ON CONFLICT that adds a delta to a minute or hour (its source left as
        `{source}`): sums and counts add up, maxima keep the larger."""
        t = table(model)
        names = ", ".join(q(c) for c in ("gpu_id", "start", *ROLLUP_COLUMNS))
        updates = ", ".join(
            f"{q(c)} = {greatest}(COALESCE({t}.{q(c)}, EXCLUDED.{q(c)}), "
            f"COALESCE(EXCLUDED.{q(c)}, {t}.{q(c)}))"
            if c in ROLLUP_MAXIMA
            else f"{q(c)} = {t}.{q(c)} + EXCLUDED.{q(c)}"
            for c in ROLLUP_COLUMNS
        )
        return (
            f"INSERT INTO {t} ({names}) {{source}} "
            f"ON CONFLICT (gpu_id, start) DO UPDATE SET {updates}"
        )
