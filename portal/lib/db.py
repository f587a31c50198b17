"""Statements on the hottest paths, run with the least overhead the database allows.

Django's PostgreSQL backend binds parameters on the client: every execution quotes each value
into the SQL text (a batch's JSON included) and PostgreSQL parses and plans the statement again.
`fetch` runs a statement through a psycopg cursor with server-side binding instead, so the
parameters travel apart from the SQL and psycopg prepares a statement it has seen a few times
(`prepare_threshold`): the telemetry request's two statements are then planned once per
connection. Errors come out as Django's (`django.db.IntegrityError`, …) like any query's, and
the statement runs on Django's connection, inside whatever transaction is open. Other
databases go through Django's cursor unchanged.

Behind a pooler in transaction mode, use PgBouncer 1.21 or newer (it tracks prepared
statements), or set CONN_MAX_AGE=0 and run without one.
"""

import time

import msgspec
from django.db import connection


def fetch(sql: str, params: list) -> list[tuple]:
    """Run one statement with `%s` placeholders; its rows ([] if it returns none)."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []
    import psycopg

    connection.ensure_connection()
    started = time.monotonic()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall() if cursor.description else []
    if connection.queries_logged:  # DEBUG, or a test counting queries: seen like any query
        connection.queries_log.append({"sql": sql, "time": f"{time.monotonic() - started:.3f}"})
    return rows


def json_rows(columns: list[tuple[str, str]]) -> str:
    """A FROM item `v` reading rows from one JSON parameter, an array of arrays, as the given
    (name, type) columns: `SELECT * FROM {json_rows(...)}` with `[rows_json(rows)]`.

    Many rows go to PostgreSQL as one JSON text instead of one array parameter per column:
    msgspec's encoder is C, psycopg's array dumper is Python, and it took half of a worker's
    time.
    """
    fields = ", ".join(f"(e->>{i})::{kind} AS {name}" for i, (name, kind) in enumerate(columns))
    return f"(SELECT {fields} FROM jsonb_array_elements(%s::jsonb) AS e) AS v"  # noqa: S608 - our names


def rows_json(rows) -> str:
    """Rows (sequences) as the JSON `json_rows` reads; times as RFC 3339 (UTC as `Z`).

    msgspec writes datetimes itself: `json.dumps` called back into Python for each of them,
    and the drains send one or two per rollup row."""
    return msgspec.json.encode(list(rows)).decode()
