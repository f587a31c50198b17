"""The telemetry SQL for PostgreSQL: many rows as one JSON parameter, rows locked in id order.

Rows go as one JSON text read by `jsonb_array_elements` (`portal.lib.db.json_rows`): a fixed
statement whatever the row count, so it is prepared once, and `json.dumps` is C where
psycopg's array dumper is Python. Samples do not even travel back: they are read in SQL from
the jsonb their batches hold. Rows that two workers may both update (GPUs, nodes) are locked
first in id order, so overlapping drains wait for each other instead of deadlocking.
"""

import functools

import msgspec
from django.db import connection
from psycopg.types.json import Jsonb

from contributors.models import GPU, GpuHour, GpuMinute, Node, RollupDue, Sample, TelemetryBatch
from contributors.telemetry.sql.common import (
    LIVE_COLUMNS,
    NEWEST_SAMPLE,
    ROLLUP_COLUMNS,
    ROLLUP_MAXIMA,
    SAMPLE_COLUMNS,
    Statements,
    field,
    q,
    table,
)
from contributors.telemetry.validation import OBJECT_KEYS
from portal.lib import db


def _kind(model, column: str) -> str:
    """The type a JSON value is read as, from the model's field."""
    target = field(model, column)
    if target.is_relation:
        target = target.target_field
    return {
        "DateTimeField": "timestamptz",
        "FloatField": "float8",
        "CharField": "text",
        "TextField": "text",
    }.get(target.get_internal_type(), "int8")


class PostgreSQL(Statements):
    vendor = "postgresql"

    def json_value(self, value):
        """A jsonb parameter encoded by msgspec (about five times faster than `json.dumps` for
        a batch's samples). jsonb keeps values, not text: `1e16` and `1e+16` are one number."""
        return Jsonb(value, dumps=msgspec.json.encode)

    def _insert_rows(self, model, columns: list[str], values: list[list], tail: str = "") -> None:
        """INSERT many rows, given column by column, in one statement."""
        source = db.json_rows([(q(c), _kind(model, c)) for c in columns])
        db.fetch(
            f"INSERT INTO {table(model)} ({', '.join(q(c) for c in columns)}) "  # noqa: S608
            f"SELECT * FROM {source}{tail}",
            [db.rows_json(zip(*values, strict=True))],
        )

    def insert_samples(self, batch_ids: list[int], columns: dict[str, list]) -> None:
        """The samples of the batches (held by this transaction), in batch and list order; a
        (GPU, ts) already stored is ignored, so the first copy wins.

        Read from the jsonb the batches hold rather than sent back from the worker: no JSON
        encoded again, no JSON text parsed again (`columns`, what the worker decoded, is for
        SQLite)."""
        db.fetch(self._insert_stored_samples_sql(), [batch_ids])

    @functools.cache  # noqa: B019 - one instance per database, kept for good
    def _insert_stored_samples_sql(self) -> str:
        # A sample is a list in SAMPLE_COLUMNS order, or (batches accepted before that) an
        # object with OBJECT_KEYS: `->>` of an index on an object, or of a key on a list, is
        # NULL, so COALESCE reads either form.
        values = ", ".join(
            f"COALESCE(s.e->>{i}, s.e->>'{key}')::{_kind(Sample, column)}"
            for i, (column, key) in enumerate(zip(SAMPLE_COLUMNS, OBJECT_KEYS, strict=True))
        )
        return (
            f"INSERT INTO {table(Sample)} ({', '.join(q(c) for c in SAMPLE_COLUMNS)}) "  # noqa: S608
            f"SELECT {values} FROM {table(TelemetryBatch)} b "
            "CROSS JOIN LATERAL jsonb_array_elements(b.samples) WITH ORDINALITY AS s(e, n) "
            "WHERE b.id = ANY(%s) ORDER BY b.id, s.n ON CONFLICT (gpu_id, ts) DO NOTHING"
        )

    def insert_due(self, notes: list[tuple]) -> None:
        """Note (gpu, first ts, last ts) spans whose rollups the periodic task redoes."""
        columns = ["gpu_id", "first_ts", "last_ts"]
        self._insert_rows(RollupDue, columns, [list(c) for c in zip(*notes, strict=True)])

    def gpus_locked(self, ids: list[int]) -> list[tuple]:
        """`NEWEST_SAMPLE` of the GPUs, their rows locked in id order."""
        return db.fetch(
            f"SELECT {', '.join(NEWEST_SAMPLE)} FROM {table(GPU)} WHERE id = ANY(%s) "  # noqa: S608
            "ORDER BY id FOR UPDATE",
            [ids],
        )

    def lock_gpus(self, ids: list[int]) -> None:
        if ids:
            gpu = table(GPU)
            db.fetch(f"SELECT id FROM {gpu} WHERE id = ANY(%s) ORDER BY id FOR UPDATE", [ids])  # noqa: S608

    def update_live_state(self, rows: list[list]) -> None:
        """One UPDATE for all the GPUs: rows of (id, the sample columns GPU mirrors, seen)."""
        gpu = table(GPU)
        source = db.json_rows(
            [("id", "int8"), *((c, _kind(GPU, target)) for target, c in LIVE_COLUMNS),
             ("seen", "timestamptz")]
        )  # fmt: skip
        db.fetch(
            f"UPDATE {gpu} SET {self.live_state_sets(gpu)} FROM {source} "  # noqa: S608
            f"WHERE {gpu}.id = v.id",
            [db.rows_json(rows)],
        )

    def update_nodes(self, rows: list[tuple]) -> None:
        """Each node's last_seen_at and clock skew, from rows (id, seen, skew) in id order,
        never moving back."""
        node = table(Node)
        db.fetch(
            f"SELECT id FROM {node} WHERE id = ANY(%s) ORDER BY id FOR UPDATE",  # noqa: S608
            [[row[0] for row in rows]],
        )
        source = db.json_rows([("id", "int8"), ("seen", "timestamptz"), ("skew", "float8")])
        db.fetch(
            f"UPDATE {node} SET last_seen_at = v.seen, clock_skew_s = v.skew "  # noqa: S608
            f"FROM {source} WHERE {node}.id = v.id "
            f"AND ({node}.last_seen_at IS NULL OR {node}.last_seen_at < v.seen)",
            [db.rows_json(rows)],
        )

    def add_to_rollups(self, model, columns: list[list]) -> None:
        """Add deltas to minutes or hours, given column by column: gpu_id, start, then
        ROLLUP_COLUMNS."""
        names = ["gpu_id", "start", *ROLLUP_COLUMNS]
        source = db.json_rows([(q(c), _kind(model, c)) for c in names])
        db.fetch(
            self.rollup_upsert(model, "GREATEST").format(source=f"SELECT * FROM {source}"),  # noqa: S608
            [db.rows_json(zip(*columns, strict=True))],
        )

    def take_due(self, limit: int) -> list[tuple]:
        """Delete and return the oldest noted spans (gpu, first, last); the caller's
        transaction rolls the delete back if the rollups fail."""
        due = table(RollupDue)
        return db.fetch(
            f"DELETE FROM {due} WHERE id IN (SELECT id FROM {due} ORDER BY id LIMIT %s) "  # noqa: S608
            "RETURNING gpu_id, first_ts, last_ts",
            [limit],
        )

    def only_run(self, key: int) -> bool:
        """Whether this transaction is the only one holding `key` (an advisory lock)."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [key])
            return cursor.fetchone()[0]

    def redo_rollups(self, ranges: list[tuple], max_gap_s: int) -> bool:
        """Recompute the minutes of `ranges` (gpu, first minute, last minute) from the raw
        samples and move each hour by how much its minutes changed, in one statement (an hour
        is not read back from its sixty minutes on every run)."""
        gpus, los, his = (list(column) for column in zip(*ranges, strict=True))
        with connection.cursor() as cursor:
            cursor.execute(_redo_statement(int(max_gap_s)), [gpus, los, his])
        return True


def _redo_statement(max_gap_s: int) -> str:
    """Each sample covers [ts, e): up to the next sample, at most the gap; the covered time is
    spread over the minutes it touches, and the sample's values count in its own minute. Every
    sub-statement sees the tables as they were before it, so `o` holds the minutes as the
    previous run left them."""
    minute_table, hour_table = table(GpuMinute), table(GpuHour)
    gap = f"interval '{max_gap_s} seconds'"
    names = ", ".join(q(c) for c in ("gpu_id", "start", *ROLLUP_COLUMNS))
    replace = ", ".join(f"{q(c)} = EXCLUDED.{q(c)}" for c in ROLLUP_COLUMNS)
    add = ", ".join(
        f"{q(c)} = GREATEST({hour_table}.{q(c)}, EXCLUDED.{q(c)})" if c in ROLLUP_MAXIMA
        else f"{q(c)} = {hour_table}.{q(c)} + EXCLUDED.{q(c)}"
        for c in ROLLUP_COLUMNS
    )  # fmt: skip
    deltas = ", ".join(
        f"max(f.{q(c)})" if c in ROLLUP_MAXIMA else f"sum(f.{q(c)} - coalesce(o.{q(c)}, 0))"
        for c in ROLLUP_COLUMNS
    )
    return _REDO.format(
        gap=gap, samples=table(Sample), minutes=minute_table, hours=hour_table, names=names,
        columns=", ".join(ROLLUP_COLUMNS), replace=replace, add=add, deltas=deltas,
    )  # fmt: skip


# Only our own names and an integer go into it.
_REDO = """
    WITH d(gpu_id, lo, hi) AS (
        SELECT * FROM unnest(%s::int8[], %s::timestamptz[], %s::timestamptz[])
    ), s AS (
        SELECT d.gpu_id, d.lo, d.hi, x.ts, x.utilization_gpu_pct AS u,
               x.memory_used_mib AS m, x.temperature_c AS t, x.power_w AS p,
               LEAST(x.ts + {gap}, COALESCE(
                   LEAD(x.ts) OVER (PARTITION BY d.gpu_id, d.lo ORDER BY x.ts), x.ts + {gap}
               )) AS e
        FROM d JOIN {samples} x ON x.gpu_id = d.gpu_id
         AND x.ts >= d.lo - {gap} AND x.ts < d.hi + interval '1 minute' + {gap}
    ), b AS (
        SELECT s.gpu_id, g.start, s.u, s.m, s.t, s.p,
               g.start = date_trunc('minute', s.ts) AS own,
               EXTRACT(EPOCH FROM LEAST(s.e, g.start + interval '1 minute')
                                  - GREATEST(s.ts, g.start))::float8 AS covered
        FROM s CROSS JOIN LATERAL generate_series(
            date_trunc('minute', s.ts), s.e - interval '1 microsecond', interval '1 minute'
        ) AS g(start)
        WHERE g.start >= s.lo AND g.start <= s.hi
    ), f AS (
        SELECT gpu_id, start,
               count(*) FILTER (WHERE own) AS samples, sum(covered) AS online_s,
               count(u) FILTER (WHERE own) AS n_util,
               COALESCE(sum(u) FILTER (WHERE own), 0) AS sum_util,
               max(u) FILTER (WHERE own) AS max_util,
               COALESCE(sum(m) FILTER (WHERE own), 0) AS sum_mem,
               max(m) FILTER (WHERE own) AS max_mem,
               count(t) FILTER (WHERE own) AS n_temp,
               COALESCE(sum(t) FILTER (WHERE own), 0) AS sum_temp,
               max(t) FILTER (WHERE own) AS max_temp,
               count(p) FILTER (WHERE own) AS n_power,
               COALESCE(sum(p) FILTER (WHERE own), 0) AS sum_power,
               max(p) FILTER (WHERE own) AS max_power
        FROM b GROUP BY gpu_id, start
    ), o AS (
        SELECT m.* FROM {minutes} m JOIN f ON m.gpu_id = f.gpu_id AND m.start = f.start
    ), minutes AS (
        INSERT INTO {minutes} ({names})
        SELECT gpu_id, start, {columns} FROM f
        ON CONFLICT (gpu_id, start) DO UPDATE SET {replace}
    )
    INSERT INTO {hours} ({names})
    SELECT f.gpu_id, date_trunc('hour', f.start), {deltas}
    FROM f LEFT JOIN o ON o.gpu_id = f.gpu_id AND o.start = f.start
    GROUP BY f.gpu_id, date_trunc('hour', f.start)
    ON CONFLICT (gpu_id, start) DO UPDATE SET {add}
"""
