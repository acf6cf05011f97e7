"""Outbox expansion: accepted events become messages, one per enabled route whose channel
the recipient has an address for, each with one lineage row: `pending`, or in dry run, for a
message that could be taken at once, its outcome decided in the same transaction (see
`_decide_at_once`)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import ForeignKey, Q, QuerySet
from django.db.models.functions import Now

from audit.models import AuditRecord
from audit.services import audit_build
from comcenter.lib.db import (
    DbClock,
    column,
    insert_fields,
    is_postgres,
    prepared_rows,
    quote,
    rows_insert,
    rows_source,
)
from delivery.batch import Decision, ExpansionBatch, dry_run_now
from delivery.hooks import hooks_for
from delivery.models import ACTIVE_STATES, Lane, Message, MessageState, Route, WorkerLease
from delivery.providers.registry import provider_for
from delivery.transition_sql import compiled_statement, converted, statement_rows
from events.handoff import outbox_wake_consumed
from events.models import Event, EventStatus, OutboxState
from events.services import event_mark_handed_off
from templates.models import Template
from templates.selectors import template_choose, templates_by_key

# Where each channel finds its address in the event's recipient object.
ADDRESS_FIELDS = {"email": "email", "sms": "phone"}
EXPAND_LOCK = "outbox-expand"
# Events an outbox_expand call turns into messages at most (one transaction).
EXPAND_BATCH_SIZE = 500


def outbox_expand(*, limit: int = EXPAND_BATCH_SIZE) -> int:
    """Turn pending outbox events into messages, oldest first; returns how many events were
    consumed (0 when the outbox is empty).

    One event gives one message per enabled route of its type whose channel the recipient
    has an address for; the unique (event, route) index makes a second message impossible.
    Expansion holds a lock row so that one worker at a time expands: messages of one key are
    then created in receipt order, which the lane order relies on. A worker that finds the
    lock taken returns 0 and goes on dispatching instead of queueing behind it; an event
    committed just after the holder's last look is picked up by the ticker's next pass
    (within a second)."""
    with transaction.atomic():
        if not _expand_lock():
            return 0
        events = _pending_events(limit)
        if not events:
            return 0
        noted = _expand(events)
        event_mark_handed_off(event_ids=[event.pk for event in events], noted=noted)
    return len(events)


def _expand_lock() -> bool:
    """Lock the expansion's lock row until the caller's transaction ends, skipping it if
    another worker holds it; False when it is held. The row exists but on a new database:
    it is created only when the lock statement (built once, prepared on PostgreSQL) finds
    nothing, which is also what a held lock gives, so that case costs a look-up and a
    second try, and a free lock costs one statement."""
    if statement_rows(*compiled_statement("expand lock", _expand_lock_query)):
        return True
    WorkerLease.objects.get_or_create(name=EXPAND_LOCK)
    return bool(statement_rows(*compiled_statement("expand lock", _expand_lock_query)))


def _expand_lock_query() -> QuerySet[Any, Any]:
    return (
        WorkerLease.objects.select_for_update(skip_locked=True)
        .filter(name=EXPAND_LOCK)
        .values("pk")
    )


def _pending_events(limit: int) -> list[Event]:
    """The oldest `limit` pending accepted events (their token deferred), by a statement
    built once per process and limit (prepared on PostgreSQL) whose rows pass through the
    ORM's converters (JSON, and SQLite's datetimes and UUIDs) as a queryset's would."""
    key = (connection.vendor, limit)
    plan = _pending_plans.get(key)
    if plan is None:
        query = (
            Event.objects.filter(outbox_state=OutboxState.PENDING, status=EventStatus.ACCEPTED)
            .order_by("id")
            .defer("pending_token")[:limit]
        )
        compiler = query.query.get_compiler(connection=connection)
        built = compiler.as_sql()
        sql, params = compiled_statement(
            ("pending events", limit), lambda: (built[0], tuple(built[1]))
        )
        columns = [col for col, _, _ in compiler.select]
        names = tuple(col.target.attname for col in columns)
        converters = compiler.get_converters(columns)
        plan = _pending_plans[key] = (sql, params, names, list(converters.items()))
    sql, params, names, converters = plan
    rows = statement_rows(sql, params)
    if converters:
        rows = [converted(row, converters) for row in rows]
    alias = connection.alias
    return [Event.from_db(alias, names, row) for row in rows]


_pending_plans: dict[tuple[str, int], tuple[str, tuple[Any, ...], tuple[str, ...], Any]] = {}


def outbox_consume() -> int:
    """The outbox consumer's whole job: clear the wake marker first (so an event committed
    from now on wakes a new run), then expand until the outbox is empty."""
    outbox_wake_consumed()
    total = 0
    while consumed := outbox_expand():
        total += consumed
    return total


def _expand(events: list[Event]) -> set[int]:
    """Insert the messages of `events` with their lineage; returns the ids of the events
    that produced a message (their rows record the hand-off)."""
    # Every enabled route in one query (there are a handful): those of the batch's event
    # types, and every channel some route sends on: a sequenced event that has no message
    # on one of them settles its sequence there, so the channel's next message need not
    # wait for it.
    enabled = list(Route.objects.filter(enabled=True).order_by("position", "id"))
    types = {event.event_type for event in events}
    routes: dict[str, list[Route]] = {}
    for route in enabled:
        if route.event_type in types:
            routes.setdefault(route.event_type, []).append(route)
    channels = sorted({route.channel for route in enabled})
    lanes = _lanes_for(events, channels)
    # The templates of these routes, every locale, in one query; chosen per locale below.
    candidates = templates_by_key(keys={r.template_key for found in routes.values() for r in found})
    templates: dict[tuple[str, str], Template | None] = {}
    # One database clock for the batch: the gap waits below and the decisions at once.
    clock = DbClock()
    # The gap wait starts when a message enters its lane. Counting from the event's receipt
    # would let an outbox backlog longer than the wait release a successor before its
    # predecessor (received just before or after it) was even expanded.
    gap_until = clock.now() + timedelta(seconds=settings.ORDERING_GAP_WAIT)
    # Per event: its messages, and the lanes where it settles its sequence.
    steps: list[tuple[list[Message], list[tuple[Lane, int]]]] = []
    notes: list[AuditRecord] = []
    for event in events:
        made: list[Message] = []
        recipient = event.recipient if isinstance(event.recipient, dict) else {}
        locale = str(recipient.get("locale") or "")
        created: set[str] = set()
        if not routes.get(event.event_type):
            notes.append(_event_note(event, "delivery.no_route", {"event_type": event.event_type}))
        planned = hooks_for(event.event_type).plan(
            event=event, routes=routes.get(event.event_type, [])
        )
        if planned is not None:
            notes.extend(planned[1])
        for route, address in planned[0] if planned is not None else _targets(event, routes):
            if not address:
                notes.append(
                    _event_note(
                        event,
                        "delivery.route_skipped",
                        {
                            "route": route.pk,
                            "template": route.template_key,
                            "channel": route.channel,
                            "reason": f"recipient has no {ADDRESS_FIELDS.get(route.channel)}",
                        },
                    )
                )
                continue
            memo = (route.template_key, locale)
            if memo not in templates:
                templates[memo] = template_choose(
                    candidates.get(route.template_key, []), locale=locale or None
                )
            template = templates[memo]
            made.append(
                message_new(
                    event=event,
                    route=route,
                    lane=lanes[(event.caller, event.ordering_key, route.channel)],
                    template=template,
                    locale=locale,
                    to_address=address,
                    gap_until=gap_until if event.sequence else None,
                )
            )
            created.add(route.channel)
        steps.append(
            (
                made,
                [
                    (lanes[(event.caller, event.ordering_key, channel)], event.sequence)
                    for channel in channels
                    if event.sequence and channel not in created
                ],
            )
        )
    decided = _decide_at_once(steps, clock) if dry_run_now() else {}
    messages = [m for made, _ in steps for m in made]
    rows_insert(Message, messages)
    notes.extend(_message_row(m, decided.get(id(m))) for m in messages)
    rows_insert(AuditRecord, notes)
    highest: dict[int, int] = {}
    raised = [
        (m.lane_id, m.sequence) for m in messages if m.sequence and _raises_done(decided.get(id(m)))
    ]
    settled = [(lane.pk, sequence) for _, settle in steps for lane, sequence in settle]
    for lane_pk, sequence in [*settled, *raised]:
        highest[lane_pk] = max(sequence, highest.get(lane_pk, 0))
    _raise_done(highest)
    return {m.event_id for m in messages}


def _raise_done(highest: dict[int, int]) -> None:
    """done_sequence = max(done_sequence, the value) for each lane of `highest`.

    PostgreSQL: one prepared statement for every lane (the values as array parameters).
    SQLite: one UPDATE per sequence value, not per lane: a batch raises many lanes, mostly
    to the same few values."""
    if not highest:
        return
    if is_postgres():
        lanes, done = quote(Lane._meta.db_table), column(Lane, "done_sequence")[0]
        pk = column(Lane, "id")[0]
        sql = (
            f"UPDATE {lanes} SET {done} = v.{done} "  # noqa: S608
            f"FROM {rows_source(Lane, 'v', ('id', 'done_sequence'), many=True)} "
            f"WHERE {lanes}.{pk} = v.{pk} AND {lanes}.{done} < v.{done}"
        )
        prepared_rows(sql, _arrays(sorted(highest.items())))
        return
    by_sequence: dict[int, list[int]] = {}
    for lane_pk, sequence in highest.items():
        by_sequence.setdefault(sequence, []).append(lane_pk)
    for sequence, lane_pks in by_sequence.items():
        Lane.objects.filter(pk__in=lane_pks, done_sequence__lt=sequence).update(
            done_sequence=sequence
        )


def message_new(
    *,
    event: Event,
    route: Route,
    lane: Lane,
    template: Template | None,
    locale: str,
    to_address: str,
    gap_until: datetime | None,
) -> Message:
    """An unsaved message of `event` for `route`, waiting (`pending`) in `lane`.

    Built with positional values, Django's fast path, in the order of the model's fields
    (tests/delivery/test_expansion.py pins it): keyword construction runs each foreign key's
    descriptor (type checks, the database router) and was a fifth of the expansion's CPU,
    a message per route of every event. The related rows a batch reads (event, route, lane,
    template) are cached on the instance as the descriptors would have."""
    defaults = _message_defaults()
    # Foreign keys by their column's value: positional values set attnames.
    values: tuple[Any, ...] = (
        None,
        uuid.uuid4(),
        event.pk,
        route.pk,
        lane.pk,
        route.channel,
        route.template_key,
        template.pk if template is not None else None,
        template.current_version_id if template is not None else None,
        event.recipient_id,
        locale,
        to_address,
        event.ordering_key,
        event.sequence,
        event.sequence or 0,
        MessageState.PENDING,
        0,
        defaults.next_attempt_at,
        event.received_at,
        gap_until,
        None,
        0,
        "",
        event.expires_at,
        "",
        "",
        "",
        "",
        None,
        defaults.created_at,
        defaults.updated_at,
    )
    message = Message(*values)  # type: ignore[misc]  # the stubs' plugin reads *values as `id`
    for field, related in zip(_message_related(), (event, route, lane, template), strict=True):
        field.set_cached_value(message, related)
    return message


@functools.cache
def _message_related() -> tuple[ForeignKey[Any, Any], ...]:
    fields = [Message._meta.get_field(name) for name in ("event", "route", "lane", "template")]
    return tuple(f for f in fields if isinstance(f, ForeignKey))


@functools.cache
def _message_defaults() -> Message:
    """A message's database defaults (next_attempt_at, created_at, updated_at), as Django
    leaves them on an unsaved row: shared instances, which an insert compiles and never
    changes."""
    return Message()


def _decide_at_once(
    steps: list[tuple[list[Message], list[tuple[Lane, int]]]], clock: DbClock
) -> dict[int, Decision]:
    """Dry run decided at expansion: each new message that a dry-run batch could take as
    soon as this transaction commits is decided now, by an ExpansionBatch (the gates and
    rendering of delivery/batch.py), and inserted in its outcome state; returns the
    decisions by id() of the message.

    Claimable at once means the conditions of delivery/claims.py: the lane free (busy_until
    unset or past), no active message in it (in the database, or a message of this batch
    left undecided), and in order (no sequence, or sequence <= done_sequence + 1, with
    done_sequence raised by the messages decided before it and by the sequences settled by
    earlier events of this batch). A new message is never past its gap wait, so none is
    decided out of order.

    Race-free like a dry-run batch: the lanes are locked FOR UPDATE SKIP LOCKED until this
    transaction commits, so a claim or dry-run batch skips them, and a lane one of those
    holds now is skipped here (its messages are inserted pending, as without this). The
    active messages are read after the lock, in a statement whose snapshot includes every
    claim or batch that held the lane before. No other transaction inserts messages: the
    expansion lock is held."""
    wanted = {m.lane_id for made, _ in steps for m in made}
    if not wanted:
        return {}
    locked = _lanes_lock(wanted)
    held = _lanes_held(list(locked))
    done = {pk: sequence for pk, sequence in locked.items() if pk not in held}
    candidates: dict[str, list[Message]] = {}
    for made, _ in steps:
        for m in made:
            if m.lane_id in done:
                candidates.setdefault(m.channel, []).append(m)
    batches = {
        channel: ExpansionBatch(provider_for(channel), found, clock)
        for channel, found in candidates.items()
    }
    decided: dict[int, Decision] = {}
    for made, settle in steps:
        for m in made:
            lane = m.lane_id
            if lane not in done:
                continue
            decision = None
            if not m.sequence or m.sequence <= done[lane] + 1:
                decision = batches[m.channel].decide(m)
            if decision is None or m.state in ACTIVE_STATES:
                # Inserted waiting: it holds its lane for the later messages of this batch.
                del done[lane]
            if decision is not None:
                decided[id(m)] = decision
                if decision.raises_done and m.sequence:
                    done[lane] = max(done.get(lane, 0), m.sequence)
        for settled, sequence in settle:
            if settled.pk in done:
                done[settled.pk] = max(done[settled.pk], sequence)
    return decided


def _lanes_lock(wanted: set[int]) -> dict[int, int]:
    """Lock the free lanes of `wanted`, skipping those another transaction holds; their
    done_sequence by id. PostgreSQL: one prepared statement (the ids as an array), as for
    the statements below: each expansion batch runs both, and building the querysets cost
    more than running them."""
    if not is_postgres():
        return dict(
            Lane.objects.filter(Q(busy_until__isnull=True) | Q(busy_until__lt=Now()), pk__in=wanted)
            .select_for_update(skip_locked=True)
            .values_list("pk", "done_sequence")
        )
    return dict(prepared_rows(_lanes_lock_sql(), [sorted(wanted)]))


def _lanes_held(lanes: list[int]) -> set[int]:
    """Which of these lanes have an active message (read after their lock: see
    _decide_at_once)."""
    if not lanes:
        return set()
    if not is_postgres():
        return set(
            Message.objects.filter(lane_id__in=lanes, state__in=ACTIVE_STATES)
            .values_list("lane_id", flat=True)
            .distinct()
        )
    return {lane for (lane,) in prepared_rows(_lanes_held_sql(), [sorted(lanes)])}


@functools.cache
def _lanes_lock_sql() -> str:
    pk, busy, done = (column(Lane, n)[0] for n in ("id", "busy_until", "done_sequence"))
    # STATEMENT_TIMESTAMP() is what Django's Now() reads on PostgreSQL.
    return (
        f"SELECT {pk}, {done} FROM {quote(Lane._meta.db_table)} "  # noqa: S608
        f"WHERE {pk} = ANY(%s) AND ({busy} IS NULL OR {busy} < STATEMENT_TIMESTAMP()) "
        f"FOR UPDATE SKIP LOCKED"
    )


@functools.cache
def _lanes_held_sql() -> str:
    lane, state = column(Message, "lane")[0], column(Message, "state")[0]
    # The states in the text, not as a parameter: a generic plan of a parameter could not
    # use the partial index of active messages per lane (message_lane_active).
    states = ", ".join(f"'{MessageState(s).value}'" for s in ACTIVE_STATES)
    return (
        f"SELECT DISTINCT {lane} FROM {quote(Message._meta.db_table)} "  # noqa: S608
        f"WHERE {lane} = ANY(%s) AND {state} IN ({states})"
    )


def _raises_done(decision: Decision | None) -> bool:
    return decision is not None and decision.raises_done


def _message_row(message: Message, decision: Decision | None) -> AuditRecord:
    """A new message's one lineage row: `message.pending`, or, decided at expansion, its
    outcome from `created` with the pending row's facts. Either says it came from the
    outbox hand-off, which then writes no row of its own for the event."""
    data: dict[str, Any] = {
        "to": MessageState.PENDING,
        "reason": "created",
        "route": message.route_id,
        "channel": message.channel,
        "template": message.template_key,
        "template_version": message.template_version_id,
        "sequence": message.sequence,
        "handed_off": True,
    }
    if decision is not None:
        data.update({"from": "created", "to": decision.state, "reason": decision.reason})
        data.update(decision.data)
    return audit_build(
        kind=f"message.{message.state}",
        request_id=message.event.request_id,
        event_uid=message.event.uid,
        message_uid=message.uid,
        recipient_id=message.recipient_id,
        actor="delivery",
        data=data,
    )


def _targets(event: Event, routes: dict[str, list[Route]]) -> list[tuple[Route, str]]:
    """Each route of the event's type with the recipient's address for its channel."""
    recipient = event.recipient if isinstance(event.recipient, dict) else {}
    return [
        (route, str(recipient.get(ADDRESS_FIELDS.get(route.channel, "")) or ""))
        for route in routes.get(event.event_type, [])
    ]


def _event_note(event: Event, kind: str, data: dict[str, Any]) -> AuditRecord:
    return audit_build(
        kind=kind,
        request_id=event.request_id,
        event_uid=event.uid,
        recipient_id=event.recipient_id,
        actor="delivery",
        data=data,
    )


_LANE_KEY = ("caller", "ordering_key", "channel")
LaneKey = tuple[str, str, str]


def _lanes_for(events: list[Event], channels: list[str]) -> dict[LaneKey, Lane]:
    """The lane of each (caller, ordering key, channel) of `events`, created if missing.

    Read as plain rows, not models: one query when every lane exists, one more to create the
    missing ones (PostgreSQL: INSERT … ON CONFLICT DO NOTHING RETURNING, whose rows come back
    at once), and a last look for any that a concurrent insert won. The lanes come back as
    instances with only their key loaded (the callers need their id)."""
    keys = {(event.caller, event.ordering_key, channel) for event in events for channel in channels}
    if not keys:  # no route sends on any channel
        return {}
    ids = _lane_ids(keys)
    missing = keys - set(ids)
    if missing:
        ids.update(_lanes_create(missing))
        still = missing - set(ids)
        if still:  # another transaction created them meanwhile (its rows conflicted)
            ids.update(_lane_ids(still))
    names = ("id", "caller", "ordering_key", "channel")
    alias = connection.alias
    return {key: Lane.from_db(alias, names, (pk, *key)) for key, pk in ids.items()}


def _arrays(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Rows as one array per column, the parameters of `rows_source(..., many=True)` (none of
    a lane's columns is JSON, so no value needs preparing)."""
    return [list(values) for values in zip(*rows, strict=True)]


def _lane_ids(keys: set[LaneKey]) -> dict[LaneKey, int]:
    if not is_postgres():
        found = Lane.objects.filter(
            caller__in={k[0] for k in keys},
            ordering_key__in={k[1] for k in keys},
            channel__in={k[2] for k in keys},
        ).values_list("id", *_LANE_KEY)
        return {(c, k, ch): pk for pk, c, k, ch in found if (c, k, ch) in keys}
    match = " AND ".join(f"l.{column(Lane, n)[0]} = w.{column(Lane, n)[0]}" for n in _LANE_KEY)
    picked = ", ".join(f"w.{column(Lane, n)[0]}" for n in _LANE_KEY)
    sql = (
        f"SELECT l.{column(Lane, 'id')[0]}, {picked} "  # noqa: S608
        f"FROM {quote(Lane._meta.db_table)} l "
        f"JOIN {rows_source(Lane, 'w', _LANE_KEY, many=True)} ON {match}"
    )
    rows = prepared_rows(sql, _arrays(sorted(keys)))
    return {(caller, key, channel): pk for pk, caller, key, channel in rows}


def _lanes_create(keys: set[LaneKey]) -> dict[LaneKey, int]:
    """Insert the lanes of `keys` that no one has inserted; the ids of those this inserted
    (PostgreSQL; on SQLite, none: the caller looks them up)."""
    if not is_postgres():
        Lane.objects.bulk_create(
            [Lane(caller=caller, ordering_key=key, channel=ch) for caller, key, ch in keys],
            ignore_conflicts=True,
        )
        return {}
    fields = insert_fields(Lane)
    names = [f.name for f in fields]
    defaults = {f.name: f.get_default() for f in fields}
    rows = [
        [{**defaults, **dict(zip(_LANE_KEY, key, strict=True))}[n] for n in names]
        for key in sorted(keys)
    ]
    columns = ", ".join(column(Lane, n)[0] for n in names)
    returned = ", ".join(column(Lane, n)[0] for n in ("id", *_LANE_KEY))
    sql = (
        f"INSERT INTO {quote(Lane._meta.db_table)} ({columns}) "  # noqa: S608
        f"SELECT * FROM {rows_source(Lane, 'w', names, many=True)} "
        f"ON CONFLICT DO NOTHING RETURNING {returned}"
    )
    created = prepared_rows(sql, _arrays(rows))
    return {(caller, key, channel): pk for pk, caller, key, channel in created}
