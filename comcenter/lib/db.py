"""The database seam: the one place that knows which database runs, builds SQL from model
metadata, reads the database clock and sets up each connection.

SQL written here and in the PostgreSQL writers names no table or column literally: every
identifier comes from a model's `_meta`, so a new field cannot silently miss a statement
(tests/delivery/test_parity.py compares them with the ORM)."""

from __future__ import annotations

import contextlib
import functools
import json
import operator
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.sql import UpdateQuery
from django.utils.dateparse import parse_datetime


@functools.cache
def is_postgres() -> bool:
    """Whether the default database is PostgreSQL: its engine is fixed for the life of the
    process, and reading it through Django's connection proxy costs ~1.5 µs per call."""
    return connections[DEFAULT_DB_ALIAS].vendor == "postgresql"


def quote(name: str) -> str:
    return connection.ops.quote_name(name)


def column_of(field: models.Field[Any, Any]) -> str:
    """A concrete field's column (the stubs allow None, which only non-concrete fields have)."""
    assert field.column is not None
    return field.column


def insert_fields(model: type[models.Model]) -> list[models.Field[Any, Any]]:
    """The columns an insert names: not the primary key, not those with a database default
    (timestamps then come from the database clock)."""
    return [f for f in model._meta.concrete_fields if not f.primary_key and not f.has_db_default()]


@dataclass(frozen=True)
class _CopyPlan:
    sql: str
    # All insert columns of a row in one call (a C-level getter, not a loop over fields).
    values: Callable[[models.Model], tuple[Any, ...]]
    # The columns whose values need Django's preparation, by position in the row.
    prepared: tuple[tuple[int, models.Field[Any, Any]], ...]


@functools.cache
def _copy_plan(model: type[models.Model]) -> _CopyPlan:
    fields = insert_fields(model)
    columns = ", ".join(quote(column_of(f)) for f in fields)
    names = [f.attname for f in fields]
    getter = operator.attrgetter(*names)
    return _CopyPlan(
        sql=f"COPY {quote(model._meta.db_table)} ({columns}) FROM STDIN",
        values=getter if len(names) > 1 else lambda obj: (getter(obj),),
        # Only JSON needs Django's preparation (to the driver's Jsonb adapter); the driver
        # adapts str, int, bool, UUID, aware datetimes and None as they are, and preparing
        # every value through its field costs more than the statement itself.
        prepared=tuple((i, f) for i, f in enumerate(fields) if isinstance(f, models.JSONField)),
    )


def rows_insert(model: type[models.Model], objs: Sequence[models.Model]) -> None:
    """Insert unsaved rows with COPY (PostgreSQL) or bulk_create; primary keys stay unset."""
    if not objs:
        return
    if not is_postgres():
        model._default_manager.bulk_create(objs, batch_size=500)
        return
    plan = _copy_plan(model)
    values, prepared = plan.values, plan.prepared
    with (
        connection.cursor() as cursor,
        driver_statement(plan.sql),
        cursor.cursor.copy(plan.sql) as copy,
    ):
        for obj in objs:
            if not prepared:
                copy.write_row(values(obj))
                continue
            row = list(values(obj))
            for i, field in prepared:
                row[i] = field.get_db_prep_save(row[i], connection)
            copy.write_row(row)


_LENGTH = re.compile(r"\(\d+(?:,\s*\d+)?\)")


@contextlib.contextmanager
def driver_statement(sql: str, db: BaseDatabaseWrapper = connection) -> Iterator[None]:
    """Around a statement sent through the driver's own cursor (COPY, prepared statements),
    which Django's query log does not see: logs it like Django's own, so DEBUG and the
    query-count tests count every round trip. `db`: the connection, when the caller holds it
    already (each attribute read through Django's proxy looks the connection up again)."""
    start = time.monotonic()
    try:
        yield
    finally:
        if db.queries_logged:
            elapsed = time.monotonic() - start
            db.queries_log.append({"sql": sql, "time": f"{elapsed:.3f}"})


def prepared_rows(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Run one statement as a prepared statement of this connection (PostgreSQL) and return
    its rows.

    Django's cursor binds parameters client-side, so PostgreSQL parses and plans every
    statement it sends as a new text; a hot statement whose text is the same for every call
    is planned once per connection this way (see connection_setup, which keeps Django's own
    statements unprepared). Errors map to Django's as through its cursor, and the statement
    is logged for DEBUG and the query-count tests (driver_statement). Parameters are the
    driver's: already prepared for the database (no ORM field preparation happens here)."""
    db = connections[DEFAULT_DB_ALIAS]  # one look-up, not one per attribute of the proxy
    db.ensure_connection()
    db.validate_no_broken_transaction()
    with (
        db.wrap_database_errors,
        driver_statement(sql, db),
        psycopg.Cursor(db.connection) as cursor,
    ):
        # No parameters: None, so that a `%` in the text is not read as a placeholder.
        cursor.execute(_encoded(sql), params or None, prepare=True)
        return cursor.fetchall() if cursor.description is not None else []


@functools.lru_cache(maxsize=512)
def _encoded(sql: str) -> bytes:
    """The statement as the driver's bytes, encoded once: given text, the driver encodes it
    and hashes the new bytes for its query cache on every call."""
    return sql.encode()


def _field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field)
    return field


@functools.lru_cache(maxsize=256)
def column(model: type[models.Model], name: str) -> tuple[str, str, bool]:
    """(quoted column, SQL type, is JSON) of a field, by name. The type has no length: an
    explicit cast to varchar(n) truncates silently, while the column itself refuses an
    over-long value, as it does for the ORM."""
    field = _field(model, name)
    sql_type = _LENGTH.sub("", field.db_type(connection) or "")
    return quote(column_of(field)), sql_type, isinstance(field, models.JSONField)


# A JSON column of many rows travels as one JSON array (one text to encode and send), not as
# an array of JSON texts: the driver quotes and escapes each element of a text array in
# Python, which for lineage data cost more than the rest of the statement's parameters.
# A JSON null element is the SQL NULL that None stands for, as in the ORM.
_JSON_ARRAY = (
    "ARRAY(SELECT NULLIF(e, 'null'::jsonb) FROM jsonb_array_elements(%s::jsonb) "
    "WITH ORDINALITY AS t(e, n) ORDER BY n)"
)


def rows_source(model: type[models.Model], alias: str, names: Sequence[str], many: bool) -> str:
    """Rows as a FROM item: one array parameter per column (`unnest`) for many rows, so the
    statement text does not grow with their number; plain typed parameters for one row (the
    common case of a send's result, and cheaper for the driver to adapt than arrays)."""
    columns = ", ".join(column(model, n)[0] for n in names)
    if many:
        arrays = ", ".join(
            _JSON_ARRAY if column(model, n)[2] else f"%s::{column(model, n)[1]}[]" for n in names
        )
        return f"unnest({arrays}) AS {alias}({columns})"
    values = ", ".join(f"%s::{column(model, n)[1]}" for n in names)
    return f"(VALUES ({values})) AS {alias}({columns})"


def rows_params(
    model: type[models.Model], names: Sequence[str], rows: Sequence[Sequence[Any]]
) -> list[Any]:
    """The parameters of `rows_source`: one value per column for one row (JSON as its
    text), else one array per column (a JSON column as the text of a JSON array)."""
    json_columns = [column(model, n)[2] for n in names]
    if len(rows) == 1:
        return [
            json.dumps(v) if is_json and v is not None else v
            for v, is_json in zip(rows[0], json_columns, strict=True)
        ]
    columns: list[list[Any]] = [list(values) for values in zip(*rows, strict=True)]
    if not rows:  # an empty array per column
        columns = [[] for _ in names]
    if len(columns) != len(names):
        raise ValueError(f"rows of {len(columns)} values for {len(names)} columns")
    params: list[Any] = [
        json.dumps(values) if is_json else values
        for values, is_json in zip(columns, json_columns, strict=True)
    ]
    return params


def insert_row_sql(
    model: type[models.Model], alias: str, computed: dict[str, str] | None = None
) -> str:
    """INSERT of one row of `model` (its insert_fields, as typed parameters named `alias`),
    to which a caller appends ON CONFLICT, RETURNING or a join; parameters: insert_row_params.
    `computed` replaces a field's value by an SQL expression over `alias` (its parameter is
    still passed, so the parameters stay those of insert_row_params)."""
    names = [f.name for f in insert_fields(model)]
    columns = ", ".join(column(model, n)[0] for n in names)
    computed = computed or {}
    picked = ", ".join(computed.get(n) or f"{alias}.{column(model, n)[0]}" for n in names)
    return (
        f"INSERT INTO {quote(model._meta.db_table)} ({columns}) "  # noqa: S608
        f"SELECT {picked} FROM {rows_source(model, alias, names, many=False)}"
    )


def insert_row_params(obj: models.Model) -> list[Any]:
    """The values of `obj` for insert_row_sql: JSON as its text, the rest as the driver adapts
    it (as rows_params for one row). Read through COPY's plan, once per model: listing the
    insert fields and their columns per call cost more on the ack path than reading them."""
    plan = _copy_plan(type(obj))
    row = list(plan.values(obj))
    for i, _ in plan.prepared:
        if row[i] is not None:
            row[i] = json.dumps(row[i])
    return row


@functools.lru_cache(maxsize=256)
def _assignments_cached(
    model: type[models.Model], items: tuple[tuple[str, Any], ...]
) -> tuple[str, tuple[Any, ...]]:
    query = UpdateQuery(model)
    compiler = query.get_compiler(connection=connection)
    sets: list[str] = []
    params: list[Any] = []
    for name, value in items:
        field = _field(model, name)
        if hasattr(value, "resolve_expression"):
            sql, sql_params = compiler.compile(
                value.resolve_expression(query, allow_joins=False, for_save=True)
            )
        else:
            sql, sql_params = "%s", [field.get_db_prep_save(value, connection)]
        sets.append(f"{quote(column_of(field))} = {sql}")
        params.extend(sql_params)
    return ", ".join(sets), tuple(params)


def assignments(model: type[models.Model], values: dict[str, Any]) -> tuple[str, list[Any]]:
    """The SET clause for `values`; ORM expressions (Now(), F() + 1) are compiled by Django,
    plain values become parameters. Compiled once per distinct set of values."""
    items = tuple(values.items())
    try:
        sql, params = _assignments_cached(model, items)
    except TypeError:  # an unhashable value: compile without the cache
        sql, params = _assignments_cached.__wrapped__(model, items)
    return sql, list(params)


def db_now() -> datetime:
    """The database's current time (aware, UTC). Leases, due times and expiry compare against
    it, never against the host's clock: worker nodes' clocks drift, the database is the one
    clock they all share."""
    with connection.cursor() as cursor:
        if is_postgres():
            cursor.execute("SELECT STATEMENT_TIMESTAMP()")
        else:
            # The same expression Django's Now() uses on SQLite (millisecond precision, UTC).
            cursor.execute("SELECT STRFTIME('%Y-%m-%d %H:%M:%f', 'NOW')")
        value = cursor.fetchone()[0]
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None:
            raise ValueError("the database returned an unreadable timestamp")
        value = parsed
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


class DbClock:
    """The database time read once, advanced by this process's monotonic clock: DB-clock
    readings for every message of a batch without a query each."""

    def __init__(self) -> None:
        self._base = db_now()
        self._mono = time.monotonic()

    def now(self) -> datetime:
        return self._base + timedelta(seconds=time.monotonic() - self._mono)


def connection_setup(*, connection: Any, **kwargs: Any) -> None:
    """The `connection_created` receiver (connected in comcenter.apps): per-connection
    settings of PostgreSQL: our hot statements are prepared.

    Their text is the same for every call of a shape (several rows travel as array
    parameters), so PostgreSQL parses and plans them once per connection instead of every
    time (figures: bench/NOTES.md). Django turns automatic preparation off (None, which also
    ignores prepare=True) for the sake of transaction-mode poolers; a threshold no statement
    reaches keeps Django's own statements unprepared while `prepare=True` works. Only
    prepared statements follow plan_cache_mode: plan once, not at every bind. With a pooler
    in front, it must be one that supports prepared statements (PgBouncer >= 1.21)."""
    if connection.vendor != "postgresql":
        return
    connection.connection.prepare_threshold = 2**31
    with connection.connection.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_generic_plan")
