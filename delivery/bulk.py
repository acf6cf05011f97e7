"""Set-based SQL for the dispatcher's batches on PostgreSQL.

Measured on PostgreSQL on the 2-core reference machine: `bulk_create` costs ~150 µs of
Python per lineage row and `bulk_update` ~1.6 ms per row, while COPY costs ~15 µs per row and
one `UPDATE ... FROM (VALUES ...)` ~20-30 µs per row. At the delivery target (1,000
messages/s, several rows each) the ORM's per-row cost alone would exceed the machine, so the
hot paths build these statements from model metadata; on SQLite (the embedded default, one
writer at a time anyway) callers use the ORM with the same results.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

import psycopg
from django.db import connection, models
from django.db.models.sql import UpdateQuery

from audit.models import AuditRecord
from comcenter.lib.bulk import column_of, insert_fields, quote
from delivery.models import Attempt, Lane, Message


def _field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field)
    return field


@functools.lru_cache(maxsize=256)
def _column(model: type[models.Model], name: str) -> tuple[str, str, bool]:
    """(quoted column, SQL type, is JSON) of a field, by name."""
    field = _field(model, name)
    db_type = field.db_type(connection)
    assert db_type is not None
    return quote(column_of(field)), db_type, isinstance(field, models.JSONField)


def _rows_source(model: type[models.Model], alias: str, names: Sequence[str], many: bool) -> str:
    """Rows as a FROM item: one array parameter per column (`unnest`) for many rows, so the
    statement text does not grow with their number; plain typed parameters for one row (the
    common case of a send's result, and cheaper for the driver to adapt than arrays)."""
    columns = ", ".join(_column(model, n)[0] for n in names)
    if many:
        arrays = ", ".join(f"%s::{_column(model, n)[1]}[]" for n in names)
        return f"unnest({arrays}) AS {alias}({columns})"
    values = ", ".join(f"%s::{_column(model, n)[1]}" for n in names)
    return f"(VALUES ({values})) AS {alias}({columns})"


def _rows_params(
    model: type[models.Model], names: Sequence[str], rows: Sequence[Sequence[Any]]
) -> list[Any]:
    """The parameters of `_rows_source` (JSON values as their text)."""
    json_columns = [_column(model, n)[2] for n in names]
    if len(rows) == 1:
        return [
            json.dumps(v) if is_json and v is not None else v
            for v, is_json in zip(rows[0], json_columns, strict=True)
        ]
    columns: list[list[Any]] = [[] for _ in names]
    for row in rows:
        for values, value in zip(columns, row, strict=True):
            values.append(value)
    for i, is_json in enumerate(json_columns):
        if is_json:
            columns[i] = [None if v is None else json.dumps(v) for v in columns[i]]
    return columns


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


# The statements below are built from model metadata (quoted identifiers); every value is a
# query parameter, hence the S608 exemptions.


@functools.lru_cache(maxsize=128)
def _transition_sql(
    set_sql: str,
    columns: tuple[str, ...],
    fenced: bool,
    rows: int,
    attempts: int,
    lineage: int,
    free_lanes: bool,
    mark_done: bool,
) -> str:
    """The statement for one shape; `rows`, `attempts`, `lineage`: 0, 1 or 2 (= several)."""
    table = quote(Message._meta.db_table)
    names = ("id", "state", "lease_token", *columns)
    if rows:
        sets = [set_sql] + [
            f"{_column(Message, n)[0]} = v.{_column(Message, n)[0]}" for n in columns
        ]
        conditions = [f"{table}.id = v.id", f"{table}.state = v.state"]
        if fenced:
            conditions.append(f"{table}.lease_token = v.lease_token")
        source = _rows_source(Message, "v", names, rows > 1)
        moved = (
            f"UPDATE {table} SET {', '.join(sets)} FROM {source} "  # noqa: S608
            f"WHERE {' AND '.join(conditions)} "
            f"RETURNING {table}.id, {table}.lease_token, {table}.lane_id, {table}.sequence"
        )
    else:
        moved = f"SELECT id, lease_token, lane_id, sequence FROM {table} WHERE false"  # noqa: S608
    parts = [f"moved AS ({moved})"]
    if free_lanes or mark_done:
        lanes = quote(Lane._meta.db_table)
        sets = []
        if free_lanes:
            # Unless another message of the lane is dispatching: a lost worker's lane can
            # have been claimed again after its lease ran out, and that claim keeps it busy.
            sets.append(
                f"busy_until = CASE WHEN EXISTS (SELECT 1 FROM {table} d "  # noqa: S608
                f"WHERE d.lane_id = {lanes}.id AND d.state = 'dispatching' "
                "AND d.id NOT IN (SELECT id FROM moved)) "
                f"THEN {lanes}.busy_until END"
            )
        if mark_done:
            sets.append(f"done_sequence = GREATEST({lanes}.done_sequence, m.done)")
        parts.append(
            f"lanes AS (UPDATE {lanes} SET {', '.join(sets)} FROM "  # noqa: S608
            "(SELECT lane_id, COALESCE(MAX(sequence), 0) AS done FROM moved GROUP BY lane_id) m "
            f"WHERE {lanes}.id = m.lane_id)"
        )
    if attempts:
        attempt_names = [f.name for f in insert_fields(Attempt) if f.name != "stale"]
        cols = ", ".join(_column(Attempt, n)[0] for n in attempt_names)
        parts.append(
            f"attempt AS (INSERT INTO {quote(Attempt._meta.db_table)} ({cols}, stale) "  # noqa: S608
            f"SELECT {', '.join('a.' + _column(Attempt, n)[0] for n in attempt_names)}, "
            f"moved.id IS NULL FROM {_rows_source(Attempt, 'a', attempt_names, attempts > 1)} "
            f"LEFT JOIN moved ON moved.id = a.{_column(Attempt, 'message')[0]})"
        )
    if lineage:
        lineage_names = [f.name for f in insert_fields(AuditRecord)]
        cols = ", ".join(_column(AuditRecord, n)[0] for n in lineage_names)
        parts.append(
            f"lineage AS (INSERT INTO {quote(AuditRecord._meta.db_table)} ({cols}) "  # noqa: S608
            f"SELECT {', '.join('l.' + _column(AuditRecord, n)[0] for n in lineage_names)} "
            f"FROM {_rows_source(AuditRecord, 'l', ['id', *lineage_names], lineage > 1)} "
            f"JOIN moved ON moved.id = l.id)"
        )
    return (
        f"WITH {', '.join(parts)} "  # noqa: S608
        "SELECT set_config('synchronous_commit', %s, true), id, lease_token FROM moved"
    )


def transition_pg(
    *,
    rows: Sequence[tuple[int, str, int, Sequence[Any]]],
    columns: Sequence[str],
    values: dict[str, Any],
    fenced: bool,
    attempts: Sequence[models.Model],
    lineage: Sequence[tuple[int, models.Model]],
    free_lanes: bool,
    mark_done: bool,
    durable: bool,
) -> dict[int, int]:
    """A message state change as one statement; returns {message id: lease_token} moved.

    `rows` are (id, state the caller saw, lease_token, per-row values of `columns`); a row
    moves only if its state (and, `fenced`, its token) is unchanged. `values` apply to all.
    The same statement inserts the `attempts` (stale when their message did not move) and the
    `lineage` rows (message id, record) of the messages that moved, and updates their lanes:
    `free_lanes` clears the busy mark, `mark_done` raises done_sequence to their sequence.
    One round trip instead of five per send; with `durable=False` the commit does not wait
    for the WAL flush."""
    set_sql, params = assignments(Message, values)
    sql = _transition_sql(
        set_sql,
        tuple(columns),
        fenced,
        min(len(rows), 2),
        min(len(attempts), 2),
        min(len(lineage), 2),
        free_lanes,
        mark_done,
    )
    if rows:
        names = ("id", "state", "lease_token", *columns)
        params += _rows_params(
            Message, names, [[pk, str(state), token, *extra] for pk, state, token, extra in rows]
        )
    else:
        params = []
    if attempts:
        fields = [f for f in insert_fields(Attempt) if f.name != "stale"]
        params += _rows_params(
            Attempt,
            [f.name for f in fields],
            [[getattr(a, f.attname) for f in fields] for a in attempts],
        )
    if lineage:
        fields = insert_fields(AuditRecord)
        params += _rows_params(
            AuditRecord,
            ["id", *[f.name for f in fields]],
            [[pk] + [getattr(r, f.attname) for f in fields] for pk, r in lineage],
        )
    # A prepared statement: its text is the same for every call of a shape (several rows
    # travel as array parameters), so PostgreSQL parses and plans it once per connection instead of
    # every time (~0.7 ms of the ~1.1 ms it costs otherwise). Django turns automatic
    # preparation off for the sake of transaction-mode poolers; with such a pooler in front,
    # it must be one that supports prepared statements (PgBouncer >= 1.21).
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:
        # Django disables preparation with None, which also ignores prepare=True; a threshold
        # no statement reaches keeps Django's own statements unprepared. Only prepared
        # statements (ours) follow plan_cache_mode: plan once, not at every bind.
        raw.prepare_threshold = 2**31
        raw.execute("SET plan_cache_mode = force_generic_plan")
    with connection.wrap_database_errors, psycopg.Cursor(raw) as cursor:
        cursor.execute(sql, [*params, "on" if durable else "off"], prepare=True)
        return {pk: token for _, pk, token in cursor.fetchall()}
