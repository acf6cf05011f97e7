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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from django.db import connection
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators

from audit.models import AuditRecord
from comcenter.lib.db import (
    assignments,
    column,
    insert_fields,
    is_postgres,
    prepared_rows,
    quote,
    rows_params,
    rows_source,
)
from delivery.models import ACTIVE_STATES, Attempt, Lane, Message, MessageState

if TYPE_CHECKING:
    from delivery.transitions import Change, Write

# The statements below are built from model metadata (quoted identifiers); every value is a
# query parameter, hence the S608 exemptions.


# The condition of the index message_lane_active, as SQL.
_ACTIVE = ", ".join(f"'{state.value}'" for state in ACTIVE_STATES)


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
        # The row is found by its primary key. The state is compared with IS NOT DISTINCT
        # FROM (the same as = for this NOT NULL column), which no index serves: with `=`, the
        # plan prepared once per connection could look the row up through the index on
        # (state, updated_at) instead, reading every dispatching row per send.
        conditions = [
            f"{table}.{pk} = v.{pk}",
            f"{table}.{_m('state')} IS NOT DISTINCT FROM v.{_m('state')}",
        ]
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
            # Looked up among the lane's active messages (the index message_lane_active,
            # whose condition the IN list matches): with `state = 'dispatching'` the
            # prepared plan could scan the index of all dispatching messages instead (one
            # row per message in flight, for every send).
            sets.append(
                f"{busy} = CASE WHEN EXISTS (SELECT 1 FROM {table} d "  # noqa: S608
                f"WHERE d.{lane_id} = {lanes}.{_lane('id')} "
                f"AND d.{_m('state')} IN ({_ACTIVE}) "
                f"AND d.{_m('state')} IS NOT DISTINCT FROM '{MessageState.DISPATCHING.value}' "
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


def converted(row: Sequence[Any], converters: list[Any]) -> tuple[Any, ...]:
    """One row through the ORM's converters (`compiler.get_converters(...).items()`), as
    SQLCompiler.apply_converters does, with this thread's connection."""
    values = list(row)
    for position, (functions, expression) in converters:
        for convert in functions:
            values[position] = convert(values[position], expression, connection)
    return tuple(values)


# Stands for the primary keys while a by-keys statement is compiled; never compared with data.
_PK_PLACEHOLDER = -1


@dataclass(frozen=True)
class _ByPks:
    sql: str
    model: type[Model]
    names: tuple[str, ...]
    end: int
    converters: list[Any]
    populators: list[Any]


_by_pks: dict[Any, _ByPks] = {}


def instances_by_pks(
    name: Any, build: Callable[[], QuerySet[Any]], pks: Sequence[Any]
) -> list[Any]:
    """The instances of the queryset `build` gives, filtered to the primary keys `pks`, as
    iterating `build().filter(pk__in=pks)` would give them (select_related rows attached,
    deferred fields deferred), for a queryset with no parameters of its own.

    PostgreSQL: the statement is built once per process under `name`, with `pk = ANY(%s)`
    for the list: one text whatever the number of keys, prepared, and no queryset built
    and compiled per call (which cost more than running it, for a batch's small reads)."""
    if not pks:
        return []
    if not is_postgres():
        return list(build().filter(pk__in=pks))
    plan = _by_pks.get(name)
    if plan is None:
        plan = _by_pks[name] = _by_pks_plan(build().filter(pk__in=[_PK_PLACEHOLDER]))
    rows = prepared_rows(plan.sql, [list(pks)])
    alias = connection.alias
    instances = []
    for row in rows:
        values = converted(row, plan.converters) if plan.converters else row
        instance = plan.model.from_db(alias, plan.names, values[: plan.end])
        for populator in plan.populators:
            populator.populate(values, instance)
        instances.append(instance)
    return instances


def _by_pks_plan(query: QuerySet[Any]) -> _ByPks:
    """What ModelIterable reads of a compiled queryset (django/db/models/query.py), with the
    `IN (%s)` of the placeholder key rewritten as `= ANY(%s)`."""
    compiler = query.query.get_compiler(connection=connection)
    sql, params = compiler.as_sql()
    model: type[Model] = query.model
    pk = f"{quote(model._meta.db_table)}.{column(model, model._meta.pk.name)[0]}"
    marker = f"{pk} IN (%s)"
    assert list(params) == [_PK_PLACEHOLDER], sql
    assert sql.count(marker) == 1, sql
    klass_info = compiler.klass_info
    assert klass_info is not None
    assert not compiler.annotation_col_map
    start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
    assert start == 0
    columns = [col for col, _, _ in compiler.select]
    return _ByPks(
        sql=sql.replace(marker, f"{pk} = ANY(%s)"),
        model=model,
        names=tuple(col.target.attname for col in columns[:end]),
        end=end,
        converters=list(compiler.get_converters(columns).items()),
        # Django 5.2's signature; the stubs describe a later one (with fetch_mode).
        populators=get_related_populators(klass_info, compiler.select, connection.alias),  # type: ignore[call-arg]
    )
