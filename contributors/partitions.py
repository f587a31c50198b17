"""Raw samples by UTC day: on PostgreSQL `contributors_sample` is partitioned by RANGE on `ts`,
one partition a day (`contributors_sample_p20260115`) and a DEFAULT partition for any time no
day partition covers (a late spool, a test's sample from 2024). Retention drops whole days
(`drop_days_before`) instead of deleting their rows; beat creates the days ahead
(`ensure_partitions`). SQLite keeps one table and every call here does nothing.

Migration 0011_sample_day_partitions converts an existing table; README "Upgrading: sample
partitions".
"""

import logging
import re
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone
from psycopg.errors import LockNotAvailable

from contributors.models import Sample

log = logging.getLogger(__name__)

DAY = timedelta(days=1)
PARENT = Sample._meta.db_table
DEFAULT = f"{PARENT}_default"
_DAY_PREFIX = f"{PARENT}_p"
_DAY_NAME = re.compile(re.escape(_DAY_PREFIX) + r"(\d{8})")
# Creating or dropping a partition briefly takes a lock that queues every insert behind it; if a
# long query holds the table, give up and try again at the next run rather than stall ingest.
LOCK_TIMEOUT = "5s"


def day_table(day: date) -> str:
    return f"{_DAY_PREFIX}{day:%Y%m%d}"


def day_bounds(day: date) -> tuple[str, str]:
    """The partition's range [from, to) as timestamptz literals (UTC midnights)."""
    return f"{day:%Y-%m-%d} 00:00:00+00", f"{day + DAY:%Y-%m-%d} 00:00:00+00"


def ensure_partitions(now: datetime | None = None, days_ahead: int | None = None) -> dict:
    """Create the missing day partitions from `now`'s UTC day to `days_ahead` days after it.

    Returns {partition: rows moved into it from the DEFAULT partition} for each one created.
    Safe twice, and safe side by side: a day that exists is left alone.
    """
    now = now or timezone.now()
    if days_ahead is None:
        days_ahead = settings.SAMPLE_PARTITIONS_AHEAD_DAYS
    today = now.astimezone(UTC).date()
    return _backend().ensure([today + k * DAY for k in range(days_ahead + 1)])


def drop_days_before(cutoff: datetime) -> list[str]:
    """Drop the day partitions whose whole day is older than `cutoff` (upper bound <= cutoff);
    returns their names. Older rows elsewhere (the day straddling the cutoff, the DEFAULT
    partition) are the caller's to delete."""
    return _backend().drop_before(cutoff)


def day_partitions() -> dict[date, str]:
    """The day partitions attached to the sample table, by day ({} on SQLite)."""
    return _backend().days()


class _DayPartitions:
    """PostgreSQL: the partitions are tables attached to the sample table."""

    def days(self) -> dict[date, str]:
        with connection.cursor() as cursor:
            cursor.execute(ATTACHED, [PARENT])
            names = [row[0] for row in cursor.fetchall()]
        days = {}
        for name in names:
            if match := _DAY_NAME.fullmatch(name):
                days[datetime.strptime(match[1], "%Y%m%d").date()] = name
        return days

    def ensure(self, days: list[date]) -> dict:
        existing = self.days()
        created = {}
        for day in days:
            if day not in existing:
                created.update(self._create(day))
        return created

    @transaction.atomic
    def _create(self, day: date) -> dict:
        """Create the day's partition detached, move its rows out of the DEFAULT partition
        into it, and attach it, in one transaction: a plain CREATE … PARTITION OF fails as soon
        as the DEFAULT partition holds a row of that day."""
        name, (low, high) = day_table(day), day_bounds(day)
        q = connection.ops.quote_name
        with _lock_timeout(), connection.cursor() as cursor:
            # Nothing lands in the DEFAULT partition until the new day is attached; the
            # parent stays open to inserts of other days (ATTACH takes a weaker lock on it).
            cursor.execute(LOCK_DEFAULT.format(default=q(DEFAULT)))
            cursor.execute(EXISTS, [name])
            if cursor.fetchone()[0]:  # another run created it while this one waited
                return {}
            names = dict(parent=q(PARENT), default=q(DEFAULT), day=q(name), low=low, high=high)
            cursor.execute(CREATE_DETACHED.format(**names))
            cursor.execute(ADD_BOUNDS.format(**names, bounds=q(f"{name}_bounds")))
            columns = ", ".join(q(f.column) for f in Sample._meta.concrete_fields)
            cursor.execute(MOVE_FROM_DEFAULT.format(**names, columns=columns))
            moved = cursor.rowcount
            cursor.execute(ATTACH.format(**names))
            # The bounds check only spared ATTACH a scan; the partition constraint holds now.
            cursor.execute(DROP_BOUNDS.format(day=q(name), bounds=q(f"{name}_bounds")))
        if moved:
            log.info("moved %d samples from %s into %s", moved, DEFAULT, name)
        return {name: moved}

    def drop_before(self, cutoff: datetime) -> list[str]:
        dropped = []
        for day, name in sorted(self.days().items()):
            if datetime.combine(day + DAY, datetime.min.time(), tzinfo=UTC) > cutoff:
                continue
            try:
                with transaction.atomic(), _lock_timeout(), connection.cursor() as cursor:
                    cursor.execute(DROP.format(day=connection.ops.quote_name(name)))
            except OperationalError as exc:
                if not isinstance(exc.__cause__, LockNotAvailable):
                    raise
                log.warning("could not drop %s now, the next run will: %s", name, exc)
                continue
            dropped.append(name)
        return dropped


@contextmanager
def _lock_timeout():
    """Wait at most LOCK_TIMEOUT for a lock inside the block (in an open transaction)."""
    with connection.cursor() as cursor:
        cursor.execute(SET_LOCK_TIMEOUT, [LOCK_TIMEOUT])
        before = cursor.fetchone()[0]
    yield
    with connection.cursor() as cursor:
        cursor.execute(SET_LOCK_TIMEOUT, [before])


class _OneTable:
    """SQLite: one table, nothing to create or drop."""

    def days(self) -> dict[date, str]:
        return {}

    def ensure(self, days: list[date]) -> dict:
        return {}

    def drop_before(self, cutoff: datetime) -> list[str]:
        return []


_BACKENDS = {"postgresql": _DayPartitions(), "sqlite": _OneTable()}


def _backend():
    return _BACKENDS[connection.vendor]


# The statements. Only our own names and UTC-midnight literals built from dates go into them.
ATTACHED = """
    SELECT c.relname FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = %s::regclass AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
"""
EXISTS = "SELECT to_regclass(%s) IS NOT NULL"
# The setting as it was, then the new one, until the end of the transaction.
SET_LOCK_TIMEOUT = "SELECT current_setting('lock_timeout'), set_config('lock_timeout', %s, true)"
LOCK_DEFAULT = "LOCK TABLE {default} IN ACCESS EXCLUSIVE MODE"
# LIKE copies the columns, NOT NULLs and CHECKs; ATTACH adds the parent's indexes and foreign
# key. The bounds check lets ATTACH skip scanning the new table.
CREATE_DETACHED = "CREATE TABLE {day} (LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
ADD_BOUNDS = """
    ALTER TABLE {day} ADD CONSTRAINT {bounds}
        CHECK (ts >= '{low}'::timestamptz AND ts < '{high}'::timestamptz)
"""
MOVE_FROM_DEFAULT = """
    WITH moved AS (
        DELETE FROM {default} WHERE ts >= '{low}'::timestamptz AND ts < '{high}'::timestamptz
        RETURNING {columns}
    )
    INSERT INTO {day} ({columns}) SELECT {columns} FROM moved
"""
ATTACH = "ALTER TABLE {parent} ATTACH PARTITION {day} FOR VALUES FROM ('{low}') TO ('{high}')"
DROP_BOUNDS = "ALTER TABLE {day} DROP CONSTRAINT {bounds}"
DROP = "DROP TABLE {day}"
