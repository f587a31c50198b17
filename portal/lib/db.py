"""Statements on the hottest paths, run with the least overhead the database allows.

Django's PostgreSQL backend binds parameters on the client: every execution quotes each value
into the SQL text (a batch's JSON included) and PostgreSQL parses and plans the statement again.
`fetch` runs a statement through a psycopg cursor with server-side binding instead, so the
parameters travel apart from the SQL, and each statement is prepared on its first use
(Django turns psycopg's own `prepare_threshold` off; psycopg keeps the most recent 100 per
connection): the telemetry request's statements and the drains' are then parsed and planned
once per connection. Errors come out as Django's (`django.db.IntegrityError`, …) like any
query's, and the statement runs on Django's connection, inside whatever transaction is open.
Other databases go through Django's cursor unchanged.

Behind a pooler in transaction mode, use PgBouncer 1.21 or newer (it tracks prepared
statements), or set CONN_MAX_AGE=0 and run without one.
"""

import functools
import time
from datetime import datetime
from decimal import Decimal

import msgspec
from django.db import connection, connections
from django.db.models import Lookup


def fetch(sql: str, params: list) -> list[tuple]:
    """Run one statement with `%s` placeholders; its rows ([] if it returns none)."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []
    import psycopg

    connection.ensure_connection()
    raw = connection.connection
    # One cursor per connection, kept on Django's (per-thread) connection object and made
    # again when it reconnects: a new cursor copies the connection's adapters every time.
    cursor = getattr(connection, "_fetch_cursor", None)
    if cursor is None or cursor.closed or cursor.connection is not raw:
        cursor = connection._fetch_cursor = psycopg.Cursor(raw)
    started = time.monotonic()
    with connection.wrap_database_errors:
        # Prepared on first use (Django leaves psycopg's prepare_threshold off): these are
        # the hot paths' fixed statements, planned once per connection instead of per call.
        cursor.execute(sql, params, prepare=True)
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


def insert_many(model, objects: list, batch_size: int = 2000) -> None:
    """INSERT rows of `model`: unsaved instances, or any objects with its fields' attnames as
    attributes (a field an object lacks takes its default; primary keys are left to the
    database). By COPY on PostgreSQL, which takes 100,000 ledger rows in about a second where
    a multi-row INSERT with a parameter per value spends longer building the statement than
    running it; `bulk_create` elsewhere. Each value goes through its field's own preparation,
    as `bulk_create` does."""
    if not objects:
        return
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    if connection.vendor != "postgresql":
        if not isinstance(objects[0], model):
            objects = [model(**{f.attname: _value(f, obj) for f in fields}) for obj in objects]
        model.objects.bulk_create(objects, batch_size=batch_size)
        return
    real = connections[connection.alias]  # not the proxy: it is asked once per value
    preps = [(f, functools.partial(f.get_db_prep_save, connection=real)) for f in fields]
    columns = ", ".join(real.ops.quote_name(f.column) for f in fields)
    statement = f"COPY {real.ops.quote_name(model._meta.db_table)} ({columns}) FROM STDIN"
    real.ensure_connection()
    with (
        real.wrap_database_errors,
        real.connection.cursor() as cursor,
        cursor.copy(statement) as copy,
    ):
        for obj in objects:
            copy.write_row([_prepared(prep, _value(f, obj)) for f, prep in preps])


_MISSING = object()
# Values COPY's text format takes as they are, in a column of any field that holds them (the
# field's own preparation would only check or cast them): a tenth of settlement's time else.
_PLAIN = (int, str, bool, float, Decimal)


def _prepared(prep, value):
    if value is None or type(value) in _PLAIN:
        return value
    if type(value) is datetime and value.tzinfo is not None:
        return value
    return prep(value)


def _value(field, obj):
    value = getattr(obj, field.attname, _MISSING)
    return field.get_default() if value is _MISSING else value


class AnyOf(Lookup):
    """`field__any=ids`: whether the (integer) field is one of `ids`.

    On PostgreSQL it is `field = ANY(%s::bigint[])` with the ids as one text parameter: a
    `field__in` of 100,000 ids would put 100,000 placeholders in the SQL, which psycopg splits
    in Python (half a second a query at settlement's sizes). Elsewhere it is `IN (…)`."""

    lookup_name = "any"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        ids = [int(value) for value in self.rhs]
        if connection.vendor == "postgresql":
            return f"{lhs} = ANY(%s::bigint[])", [*params, "{" + ",".join(map(str, ids)) + "}"]
        if not ids:
            return "1 = 0", params
        return f"{lhs} IN ({', '.join(['%s'] * len(ids))})", [*params, *ids]
