"""Outbox expansion: accepted events become messages, one per enabled route whose channel
the recipient has an address for, each with its `pending` lineage row."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from audit.models import AuditRecord
from audit.services import audit_build
from comcenter.lib.db import (
    column,
    db_now,
    insert_fields,
    is_postgres,
    quote,
    rows_insert,
    rows_source,
)
from delivery.hooks import hooks_for
from delivery.models import Lane, Message, MessageState, Route, WorkerLease
from events.handoff import outbox_wake_consumed
from events.models import Event, EventStatus, OutboxState
from events.services import event_mark_handed_off
from templates.models import Template
from templates.selectors import template_for

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
    WorkerLease.objects.get_or_create(name=EXPAND_LOCK)
    with transaction.atomic():
        locked = (
            WorkerLease.objects.select_for_update(skip_locked=True)
            .filter(name=EXPAND_LOCK)
            .exists()
        )
        if not locked:
            return 0
        events = list(
            Event.objects.filter(outbox_state=OutboxState.PENDING, status=EventStatus.ACCEPTED)
            .order_by("id")
            .defer("pending_token")[:limit]
        )
        if not events:
            return 0
        _expand(events)
        event_mark_handed_off(event_ids=[event.pk for event in events])
    return len(events)


def outbox_consume() -> int:
    """The outbox consumer's whole job: clear the wake marker first (so an event committed
    from now on wakes a new run), then expand until the outbox is empty."""
    outbox_wake_consumed()
    total = 0
    while consumed := outbox_expand():
        total += consumed
    return total


def _expand(events: list[Event]) -> None:
    routes: dict[str, list[Route]] = {}
    for route in Route.objects.filter(
        enabled=True, event_type__in={event.event_type for event in events}
    ).order_by("position", "id"):
        routes.setdefault(route.event_type, []).append(route)
    # Every channel some route sends on: a sequenced event that has no message on one of
    # them settles its sequence there, so the channel's next message need not wait for it.
    channels = sorted(set(Route.objects.filter(enabled=True).values_list("channel", flat=True)))
    lanes = _lanes_for(events, channels)
    templates: dict[tuple[str, str], Template | None] = {}
    # The gap wait starts when a message enters its lane. Counting from the event's receipt
    # would let an outbox backlog longer than the wait release a successor before its
    # predecessor (received just before or after it) was even expanded.
    gap_until = db_now() + timedelta(seconds=settings.ORDERING_GAP_WAIT)
    messages: list[Message] = []
    notes: list[AuditRecord] = []
    settle: list[tuple[Lane, int]] = []
    for event in events:
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
                templates[memo] = template_for(key=route.template_key, locale=locale or None)
            template = templates[memo]
            messages.append(
                Message(
                    event=event,
                    route=route,
                    lane=lanes[(event.caller, event.ordering_key, route.channel)],
                    channel=route.channel,
                    template_key=route.template_key,
                    template=template,
                    template_version_id=template.current_version_id if template else None,
                    recipient_id=event.recipient_id,
                    locale=locale,
                    to_address=address,
                    ordering_key=event.ordering_key,
                    sequence=event.sequence,
                    lane_order=event.sequence or 0,
                    received_at=event.received_at,
                    gap_until=gap_until if event.sequence else None,
                    expires_at=event.expires_at,
                )
            )
            created.add(route.channel)
        if event.sequence:
            settle.extend(
                (lanes[(event.caller, event.ordering_key, channel)], event.sequence)
                for channel in channels
                if channel not in created
            )
    rows_insert(Message, messages)
    notes.extend(
        audit_build(
            kind="message.pending",
            request_id=m.event.request_id,
            event_uid=m.event.uid,
            message_uid=m.uid,
            recipient_id=m.recipient_id,
            actor="delivery",
            data={
                "to": MessageState.PENDING,
                "reason": "created",
                "route": m.route_id,
                "channel": m.channel,
                "template": m.template_key,
                "template_version": m.template_version_id,
                "sequence": m.sequence,
            },
        )
        for m in messages
    )
    rows_insert(AuditRecord, notes)
    highest: dict[int, int] = {}
    for lane, sequence in settle:
        highest[lane.pk] = max(sequence, highest.get(lane.pk, 0))
    for lane_pk, sequence in highest.items():
        Lane.objects.filter(pk=lane_pk, done_sequence__lt=sequence).update(done_sequence=sequence)


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
    with connection.cursor() as cursor:
        cursor.execute(sql, _arrays(sorted(keys)))
        return {(caller, key, channel): pk for pk, caller, key, channel in cursor.fetchall()}


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
    with connection.cursor() as cursor:
        cursor.execute(sql, _arrays(rows))
        return {(caller, key, channel): pk for pk, caller, key, channel in cursor.fetchall()}
