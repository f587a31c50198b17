"""The telemetry pipeline's hand-written SQL, behind one object per database.

Call sites ask `backend()` and pass parameters; where PostgreSQL and SQLite need different SQL
(many rows in one statement, row locks, an advisory lock, the rollup recomputation) each backend
holds its own, and statements both run alike live in their common base.
"""

from django.db import connection

from contributors.telemetry.sql.common import Statements
from contributors.telemetry.sql.postgresql import PostgreSQL
from contributors.telemetry.sql.sqlite import SQLite

_BACKENDS = {cls.vendor: cls() for cls in (PostgreSQL, SQLite)}


def backend() -> Statements:
    """The statements for the database of the current connection."""
    return _BACKENDS[connection.vendor]
