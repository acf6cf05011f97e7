"""The PostgreSQL writer of delivery/transitions.py: a group of moves as one statement; and
the prepared statements of the delivery's other hot reads (`compiled_statement`).

At the delivery target (1,000 messages/s, several rows each) the ORM's per-row cost alone
would exceed the machine (figures: bench/NOTES.md), so this writer builds one statement per
shape from model metadata (comcenter/lib/db.py); the ORM writer in transitions.py gives the
same rows on SQLite, and tests/delivery/test_parity.py compares the two on PostgreSQL."""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from django.db import connection
from django.db.models import QuerySet

from audit.models import AuditRecord
from comcenter.lib.db import (
    assignments,
    column,
    driver_statement,
    insert_fields,
    is_postgres,
    quote,
    rows_params,
    rows_source,
)
from delivery.models import Attempt, Lane, Message, MessageState

if TYPE_CHECKING:
    from delivery.transitions import Change, Write

# The statements below are built from model metadata (quoted identifiers); every value is a
# query parameter, hence the S608 exemptions.


def _m(name: str) -> str:
    return column(Message, name)[0]


def _lane(name: str) -> str:
    return column(Lane, name)[0]


@functools.lru_cache(maxsize=128)
def _transition_sql(
    set_sql: str,
    columns: tuple[str, ...],
    fenced: bool,
    frees_lane: bool,
    raises_done: bool,
    rows: int,
    attempts: int,
    lineage: int,
) -> str:
    """The statement for one shape; `rows`, `attempts`, `lineage`: 0, 1 or 2 (= several)."""
    table = quote(Message._meta.db_table)
    pk, lane_id, sequence, token = _m("id"), _m("lane"), _m("sequence"), _m("lease_token")
    names = ("id", "state", "lease_token", *columns)
    returned = ", ".join(f"{table}.{c}" for c in (pk, token, lane_id, sequence))
    if rows:
        sets = [set_sql] + [f"{_m(n)} = v.{_m(n)}" for n in columns]
        conditions = [f"{table}.{pk} = v.{pk}", f"{table}.{_m('state')} = v.{_m('state')}"]
        if fenced:
            conditions.append(f"{table}.{token} = v.{token}")
        source = rows_source(Message, "v", names, rows > 1)
        moved = (
            f"UPDATE {table} SET {', '.join(sets)} FROM {source} "  # noqa: S608
            f"WHERE {' AND '.join(conditions)} RETURNING {returned}"
        )
    else:
        moved = f"SELECT {returned} FROM {table} WHERE false"  # noqa: S608
    parts = [f"moved AS ({moved})"]
    if frees_lane or raises_done:
        lanes = quote(Lane._meta.db_table)
        busy, done = _lane("busy_until"), _lane("done_sequence")
        sets = []
        if frees_lane:
            # Unless another message of the lane is dispatching: a lost worker's lane can
            # have been claimed again after its lease ran out, and that claim keeps it busy.
            sets.append(
                f"{busy} = CASE WHEN EXISTS (SELECT 1 FROM {table} d "  # noqa: S608
                f"WHERE d.{lane_id} = {lanes}.{_lane('id')} "
                f"AND d.{_m('state')} = '{MessageState.DISPATCHING.value}' "
                f"AND d.{pk} NOT IN (SELECT {pk} FROM moved)) "
                f"THEN {lanes}.{busy} END"
            )
        if raises_done:
            sets.append(f"{done} = GREATEST({lanes}.{done}, m.done)")
        parts.append(
            f"lanes AS (UPDATE {lanes} SET {', '.join(sets)} FROM "  # noqa: S608
            f"(SELECT {lane_id}, COALESCE(MAX({sequence}), 0) AS done FROM moved "
            f"GROUP BY {lane_id}) m WHERE {lanes}.{_lane('id')} = m.{lane_id})"
        )
    if attempts:
        names_a = [f.name for f in insert_fields(Attempt) if f.name != "stale"]
        cols = ", ".join(column(Attempt, n)[0] for n in names_a)
        parts.append(
            f"attempt AS (INSERT INTO {quote(Attempt._meta.db_table)} "  # noqa: S608
            f"({cols}, {column(Attempt, 'stale')[0]}) "
            f"SELECT {', '.join('a.' + column(Attempt, n)[0] for n in names_a)}, "
            f"moved.{pk} IS NULL FROM {rows_source(Attempt, 'a', names_a, attempts > 1)} "
            f"LEFT JOIN moved ON moved.{pk} = a.{column(Attempt, 'message')[0]})"
        )
    if lineage:
        names_l = [f.name for f in insert_fields(AuditRecord)]
        cols = ", ".join(column(AuditRecord, n)[0] for n in names_l)
        # The message id travels in the record's own id column of the VALUES list.
        record_id = column(AuditRecord, "id")[0]
        parts.append(
            f"lineage AS (INSERT INTO {quote(AuditRecord._meta.db_table)} ({cols}) "  # noqa: S608
            f"SELECT {', '.join('l.' + column(AuditRecord, n)[0] for n in names_l)} "
            f"FROM {rows_source(AuditRecord, 'l', ['id', *names_l], lineage > 1)} "
            f"JOIN moved ON moved.{pk} = l.{record_id})"
        )
    return (
        f"WITH {', '.join(parts)} "  # noqa: S608
        f"SELECT set_config('synchronous_commit', %s, true), {pk}, {token} FROM moved"
    )


def transition_pg(
    group: Sequence[Change], write: Write, lineage: dict[int, AuditRecord]
) -> dict[int, int]:
    """One group of moves (see transitions.Write) as one statement; returns {message id:
    lease_token} of the messages that moved.

    A row moves only if its state (and, fenced, its lease_token) is still what the caller
    loaded. The same statement inserts the group's attempts (stale when their message did not
    move) and the lineage rows of the messages that moved, and updates their lanes
    (frees_lane, raises_done). One round trip instead of five per send; with `durable=False`
    the commit does not wait for the WAL flush."""
    set_sql, params = assignments(Message, write.values)
    attempts = [c for c in group if c.attempt is not None]
    sql = _transition_sql(
        set_sql,
        write.plain,
        write.fenced,
        write.frees_lane,
        write.raises_done,
        min(len(group), 2),
        min(len(attempts), 2),
        min(len(lineage), 2),
    )
    names = ("id", "state", "lease_token", *write.plain)
    params += rows_params(
        Message,
        names,
        [
            [c.message.pk, str(c.message.state), c.message.lease_token]
            + [c.values[n] for n in write.plain]
            for c in group
        ],
    )
    if attempts:
        fields = [f for f in insert_fields(Attempt) if f.name != "stale"]
        values = operator.attrgetter(*(f.attname for f in fields))
        params += rows_params(
            Attempt, [f.name for f in fields], [values(c.attempt) for c in attempts]
        )
    if lineage:
        fields = insert_fields(AuditRecord)
        values = operator.attrgetter(*(f.attname for f in fields))
        params += rows_params(
            AuditRecord,
            ["id", *[f.name for f in fields]],
            [(pk, *values(r)) for pk, r in lineage.items()],
        )
    rows = prepared_rows(sql, [*params, "on" if write.durable else "off"])
    return {pk: token for _, pk, token in rows}


def prepared_rows(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Run one statement as a prepared statement of this connection and return its rows.

    Django's cursor binds parameters client-side, so PostgreSQL parses and plans every
    statement it sends as a new text; a hot statement whose text is the same for every call
    is planned once per connection this way (see comcenter.lib.db.connection_setup, which
    keeps Django's own statements unprepared). Parameters are the driver's: already
    prepared for the database (no ORM field preparation happens here)."""
    connection.ensure_connection()
    with (
        connection.wrap_database_errors,
        driver_statement(sql),
        psycopg.Cursor(connection.connection) as cursor,
    ):
        # No parameters: None, so that a `%` in the text is not read as a placeholder.
        cursor.execute(sql, params or None, prepare=True)
        return cursor.fetchall() if cursor.description is not None else []


def statement_rows(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """`prepared_rows` on PostgreSQL; on SQLite (no prepared statements to keep) Django's
    cursor."""
    if is_postgres():
        return prepared_rows(sql, params)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description is not None else []


def query_sql(query: QuerySet[Any]) -> tuple[str, tuple[Any, ...]]:
    """A queryset's statement as the ORM compiles it for this connection."""
    sql, params = query.query.get_compiler(connection=connection).as_sql()
    return sql, tuple(params)


# Statements built by the ORM once per process and database vendor and re-executed as they
# are: building and compiling a queryset costs more CPU than running a small indexed
# statement, and a constant text is what PostgreSQL can keep prepared. Their parameters are
# constants (states, names, limits), written into the text on PostgreSQL: a prepared
# statement is planned once for any value of a parameter (force_generic_plan), and such a
# plan cannot use a partial index (`state IN (...)`, `outbox_state = 'pending'`), which is
# what makes these look-ups cheap (a parameter made the outbox watermark's read take 1 ms
# instead of a few µs).
_statements: dict[tuple[Any, ...], tuple[str, tuple[Any, ...]]] = {}


def compiled_statement(
    name: Any, build: Callable[[], QuerySet[Any] | tuple[str, tuple[Any, ...]]]
) -> tuple[str, tuple[Any, ...]]:
    """The statement `build` gives (a queryset, or SQL and parameters), built once per
    process and vendor under `name`; only for statements whose parameters never change."""
    key = (connection.vendor, name)
    statement = _statements.get(key)
    if statement is None:
        built = build()
        sql, params = built if isinstance(built, tuple) else query_sql(built)
        if is_postgres():
            connection.ensure_connection()
            sql = psycopg.ClientCursor(connection.connection).mogrify(sql, params)
            params = ()
        statement = _statements[key] = (sql, params)
    return statement
