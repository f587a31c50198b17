"""The telemetry SQL for SQLite: many rows by executemany, no row locks.

A write transaction on SQLite holds the whole database (the embedded defaults open them
IMMEDIATE), so there is nothing to lock row by row and only one writer runs at a time.
"""

from django.db import connection

from contributors.models import GPU, Node, RollupDue, Sample
from contributors.telemetry.sql.common import (
    LIVE_COLUMNS,
    NEWEST_SAMPLE,
    ROLLUP_COLUMNS,
    SAMPLE_COLUMNS,
    Statements,
    is_time,
    q,
    table,
)
from portal.lib import db

# SQLite allows 500 terms in a compound SELECT.
_UNION_CHUNK = 400


def _adapt_times(model, columns, rows):
    """Rows with their DateTimeField values as SQLite stores them."""
    adapt = connection.ops.adapt_datetimefield_value
    times = [is_time(model, c) for c in columns]
    return [
        [adapt(v) if time and v is not None else v for v, time in zip(row, times, strict=True)]
        for row in rows
    ]


class SQLite(Statements):
    vendor = "sqlite"

    def _insert_rows(self, model, columns: list[str], values: list[list], tail: str = "") -> None:
        """INSERT many rows, given column by column."""
        placeholders = ", ".join(["%s"] * len(columns))
        with connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {table(model)} ({', '.join(q(c) for c in columns)}) "  # noqa: S608
                f"VALUES ({placeholders}){tail}",
                _adapt_times(model, columns, zip(*values, strict=True)),
            )

    def insert_samples(self, batch_ids: list[int], columns: dict[str, list]) -> None:
        """The samples, given column by column (`batch_ids`, their batches, are for
        PostgreSQL); a (GPU, ts) already stored is ignored, so the first copy wins."""
        values = [columns[c] for c in SAMPLE_COLUMNS]
        self._insert_rows(
            Sample, list(SAMPLE_COLUMNS), values, " ON CONFLICT (gpu_id, ts) DO NOTHING"
        )

    def insert_due(self, notes: list[tuple]) -> None:
        """Note (gpu, first ts, last ts) spans whose rollups the periodic task redoes."""
        columns = ["gpu_id", "first_ts", "last_ts"]
        self._insert_rows(RollupDue, columns, [list(c) for c in zip(*notes, strict=True)])

    def gpus_locked(self, ids: list[int]) -> list[tuple]:
        """`NEWEST_SAMPLE` of the GPUs (the transaction holds the database)."""
        return list(GPU.objects.filter(pk__in=ids).values_list(*NEWEST_SAMPLE))

    def lock_gpus(self, ids: list[int]) -> None:
        pass  # the transaction holds the database

    def update_live_state(self, rows: list[list]) -> None:
        """One UPDATE per chunk of GPUs, the rows given as a UNION ALL of SELECTs: rows of
        (id, the sample columns GPU mirrors, seen)."""
        gpu = table(GPU)
        names = ["id", *(c for _, c in LIVE_COLUMNS), "seen"]
        times = ["id", *(target for target, _ in LIVE_COLUMNS), "last_seen_at"]
        update = (
            f"UPDATE {gpu} SET {self.live_state_sets(gpu)} FROM {{source}} WHERE {gpu}.id = v.id"  # noqa: S608
        )
        first = "SELECT " + ", ".join(f"%s AS {name}" for name in names)
        rest = "SELECT " + ", ".join(["%s"] * len(names))
        for start in range(0, len(rows), _UNION_CHUNK):
            chunk = _adapt_times(GPU, times, rows[start : start + _UNION_CHUNK])
            source = "(" + " UNION ALL ".join([first] + [rest] * (len(chunk) - 1)) + ") AS v"
            db.fetch(update.format(source=source), [v for row in chunk for v in row])

    def update_nodes(self, rows: list[tuple]) -> None:
        """Each node's last_seen_at and clock skew, from rows (id, seen, skew) in id order,
        never moving back."""
        adapt = connection.ops.adapt_datetimefield_value
        with connection.cursor() as cursor:
            for node_id, seen, skew in rows:
                seen = adapt(seen)
                cursor.execute(
                    f"UPDATE {table(Node)} SET last_seen_at = %s, clock_skew_s = %s "  # noqa: S608
                    "WHERE id = %s AND (last_seen_at IS NULL OR last_seen_at < %s)",
                    [seen, skew, node_id, seen],
                )

    def add_to_rollups(self, model, columns: list[list]) -> None:
        """Add deltas to minutes or hours, given column by column: gpu_id, start, then
        ROLLUP_COLUMNS."""
        placeholders = ", ".join(["%s"] * (2 + len(ROLLUP_COLUMNS)))
        with connection.cursor() as cursor:
            cursor.executemany(
                self.rollup_upsert(model, "MAX").format(source=f"VALUES ({placeholders})"),
                _adapt_times(
                    model, ["gpu_id", "start", *ROLLUP_COLUMNS], zip(*columns, strict=True)
                ),
            )

    def take_due(self, limit: int) -> list[tuple]:
        """Delete and return the oldest noted spans (gpu, first, last); the caller's
        transaction rolls the delete back if the rollups fail."""
        rows = list(
            RollupDue.objects.order_by("pk").values_list("pk", "gpu_id", "first_ts", "last_ts")[
                :limit
            ]
        )
        RollupDue.objects.filter(pk__in=[row[0] for row in rows]).delete()
        return [row[1:] for row in rows]

    def only_run(self, key: int) -> bool:
        return True  # this transaction is the only writer (IMMEDIATE)

    def redo_rollups(self, ranges: list[tuple], max_gap_s: int) -> bool:
        """False: SQLite has no statement for it, the caller recomputes in Python."""
        return False
