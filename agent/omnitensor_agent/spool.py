"""A durable on-disk queue of samples (SQLite, WAL), so nothing is lost while offline.

Samples are written here before any send. ``next_batch`` freezes a group of unsent samples
under a uuid ``batch_id`` stored with them, so a resend after a crash or a timeout carries
the same id and the portal's per-batch idempotency makes the replay harmless. The queue is
bounded: past ``max_samples`` the oldest are dropped and counted, since fresh telemetry is
worth more than a backlog from days ago (the portal refuses samples older than 24 h anyway).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_MAX_SAMPLES = 200_000  # a day of 10 s samples for a couple of GPUs, ~60 MB
MAX_BATCH_SAMPLES = 1000  # the portal's limit
MAX_BATCH_BYTES = 900_000  # under the portal's 1 MiB body limit, leaving room for the envelope

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    payload TEXT NOT NULL,
    batch_id TEXT
);
CREATE INDEX IF NOT EXISTS samples_batch ON samples (batch_id);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass
class Batch:
    batch_id: str
    samples: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0


class Spool:
    def __init__(self, path: str | Path, max_samples: int = DEFAULT_MAX_SAMPLES) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_samples = max_samples
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so that the sampler and
        # the sender (separate connections) never interleave a read-then-write.
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives process crashes
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)

    def add(self, samples: list[dict[str, Any]]) -> int:
        """Queue samples; returns how many old samples were dropped to stay in bounds."""
        with self._tx():
            self._db.executemany(
                "INSERT INTO samples (payload) VALUES (?)",
                [(json.dumps(s, separators=(",", ":")),) for s in samples],
            )
            dropped = self._enforce_bound()
        if dropped:
            log.warning(
                "spool full (%d samples): dropped the %d oldest samples", self.max_samples, dropped
            )
        return dropped

    def _enforce_bound(self) -> int:
        (count,) = self._db.execute("SELECT COUNT(*) FROM samples").fetchone()
        excess = count - self.max_samples
        if excess <= 0:
            return 0
        self._db.execute(
            "DELETE FROM samples WHERE id IN (SELECT id FROM samples ORDER BY id LIMIT ?)",
            (excess,),
        )
        # A pending batch that lost all its samples is gone; one that lost some is resent
        # smaller under the same id, which is safe: the portal reads a batch id only once.
        self._db.execute(
            "DELETE FROM batches WHERE batch_id NOT IN "
            "(SELECT DISTINCT batch_id FROM samples WHERE batch_id IS NOT NULL)"
        )
        self._bump("dropped", excess)
        return excess

    def _bump(self, name: str, by: int) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    def next_batch(
        self, max_samples: int = MAX_BATCH_SAMPLES, max_bytes: int = MAX_BATCH_BYTES
    ) -> Batch | None:
        """The oldest unsent batch, resuming one that was formed earlier (same id, same
        samples) before forming a new one. None when nothing is queued."""
        with self._tx():
            row = self._db.execute(
                "SELECT batch_id, attempts FROM batches ORDER BY rowid LIMIT 1"
            ).fetchone()
            if row is None:
                row = self._form_batch(max_samples, max_bytes)
                if row is None:
                    return None
            batch_id, attempts = row
            self._db.execute(
                "UPDATE batches SET attempts = attempts + 1 WHERE batch_id = ?", (batch_id,)
            )
            payloads = self._db.execute(
                "SELECT payload FROM samples WHERE batch_id = ? ORDER BY id", (batch_id,)
            ).fetchall()
        return Batch(batch_id, [json.loads(p) for (p,) in payloads], attempts + 1)

    def _form_batch(self, max_samples: int, max_bytes: int) -> tuple[str, int] | None:
        rows = self._db.execute(
            "SELECT id, length(payload) FROM samples WHERE batch_id IS NULL ORDER BY id LIMIT ?",
            (max_samples,),
        ).fetchall()
        ids, size = [], 0
        for sample_id, length in rows:
            if ids and size + length + 1 > max_bytes:
                break
            ids.append(sample_id)
            size += length + 1
        if not ids:
            return None
        batch_id = str(uuid.uuid4())
        self._db.execute("INSERT INTO batches (batch_id) VALUES (?)", (batch_id,))
        self._db.execute(
            "UPDATE samples SET batch_id = ? WHERE id BETWEEN ? AND ? AND batch_id IS NULL",
            (batch_id, ids[0], ids[-1]),
        )
        return batch_id, 0

    def mark_sent(self, batch_id: str) -> None:
        self._finish(batch_id, counter="sent")

    def drop_batch(self, batch_id: str) -> int:
        """Discard a batch the portal can never accept (400, 413); returns its size."""
        return self._finish(batch_id, counter="rejected")

    def _finish(self, batch_id: str, counter: str) -> int:
        with self._tx():
            deleted = self._db.execute(
                "DELETE FROM samples WHERE batch_id = ?", (batch_id,)
            ).rowcount
            self._db.execute("DELETE FROM batches WHERE batch_id = ?", (batch_id,))
            self._bump(counter, deleted)
        return deleted

    def stats(self) -> dict[str, int]:
        queued = self._db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        in_batches = self._db.execute(
            "SELECT COUNT(*) FROM samples WHERE batch_id IS NOT NULL"
        ).fetchone()[0]
        counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
        return {
            "queued": queued,
            "in_pending_batch": in_batches,
            "sent_total": counters.get("sent", 0),
            "dropped_total": counters.get("dropped", 0),
            "rejected_total": counters.get("rejected", 0),
        }

    def dropped_total(self) -> int:
        return self.stats()["dropped_total"]


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
