"""Writes of the events app: event types and event intake."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models.functions import Now

from audit.models import AuditRecord
from audit.services import audit_append, audit_append_many, audit_build
from comcenter.lib.db import (
    column,
    insert_row_params,
    insert_row_sql,
    is_postgres,
    prepared_rows,
    quote,
)
from comcenter.lib.hashing import json_hash
from events.handoff import outbox_wake
from events.models import Event, EventStatus, EventType, OutboxState

log = logging.getLogger(__name__)

# --- event types --------------------------------------------------------------------------

_TYPES_CACHE_SECONDS = 5.0
_types_cache: tuple[float, frozenset[str]] = (0.0, frozenset())


def known_event_types() -> frozenset[str]:
    """Event types the intake accepts, cached for a few seconds per process."""
    global _types_cache
    now = time.monotonic()
    if _types_cache[0] > now:
        return _types_cache[1]
    names = frozenset(EventType.objects.values_list("name", flat=True))
    _types_cache = (now + _TYPES_CACHE_SECONDS, names)
    return names


def forget_event_types() -> None:
    global _types_cache
    _types_cache = (0.0, frozenset())


def event_type_ensure(*, name: str, description: str = "") -> EventType:
    event_type, _ = EventType.objects.get_or_create(
        name=name, defaults={"description": description}
    )
    forget_event_types()
    return event_type


def event_type_save(*, event_type: EventType, actor: str, created: bool) -> EventType:
    """Save an operator's edit of an event type, audited (the admin's form calls this)."""
    with transaction.atomic():
        previous = (
            None
            if created
            else EventType.objects.filter(pk=event_type.pk).values("name", "description").first()
        )
        event_type.save()
        audit_append(
            kind="event_type.created" if created else "event_type.changed",
            actor=actor,
            data={
                "event_type": event_type.pk,
                "name": event_type.name,
                "description": event_type.description,
                "previous": previous,
            },
        )
    forget_event_types()
    return event_type


def event_type_delete(*, event_type: EventType, actor: str) -> None:
    """Delete an event type (the intake then answers 422 for it), audited."""
    with transaction.atomic():
        audit_append(
            kind="event_type.deleted",
            actor=actor,
            data={"event_type": event_type.pk, "name": event_type.name},
        )
        event_type.delete()
    forget_event_types()


# --- intake ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AcceptResult:
    event: Event
    duplicate: bool


class IdempotencyConflict(Exception):
    """Same caller and key, different payload."""

    def __init__(self, event: Event) -> None:
        super().__init__("idempotency key reused with a different payload")
        self.event = event


def event_accept(
    *,
    caller: str,
    payload: dict[str, Any],
    idempotency_key: str,
    request_id: str,
    auth_pending: bool = False,
    pending_token: str = "",
) -> AcceptResult:
    """Store a validated event and its outbox entry in one transaction.

    `payload` is the validated body (without the idempotency key). Idempotency is decided by
    the unique index on (caller, idempotency_key) of accepted events: of concurrent duplicates
    exactly one insert commits; the others fail on the index, then read the winner and compare
    payload hashes. An auth_pending event takes no key (anyone can claim any subject while
    tokens cannot be verified): it is always stored, and its verification settles the key
    (event_release_verified). An accepted event whose ordering key has an auth_pending event
    waits behind it (outbox held), so verification does not reorder the key."""
    # Timestamps as canonical ISO text, so the payload hash does not depend on how the
    # caller formatted them (and datetimes from any caller hash at all).
    payload = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in payload.items()}
    payload_hash = json_hash(payload)
    recipient = payload["recipient"]
    status = EventStatus.AUTH_PENDING if auth_pending else EventStatus.ACCEPTED
    event = _event_build(
        caller=caller,
        event_type=payload["event_type"],
        idempotency_key=idempotency_key,
        payload_hash=payload_hash,
        ordering_key=payload.get("ordering_key") or recipient["id"],
        sequence=payload.get("sequence"),
        recipient=recipient,
        data=payload.get("data") or {},
        occurred_at=payload.get("occurred_at"),
        expires_at=payload.get("expires_at"),
        request_id=request_id,
        status=status,
        pending_token=pending_token if auth_pending else "",
        outbox_state=OutboxState.HELD if auth_pending else OutboxState.PENDING,
    )
    lineage = {"event_type": event.event_type, "status": status, "sequence": event.sequence}
    if is_postgres():
        inserted = _insert_with_lineage_pg(event, lineage)
    else:
        inserted = _insert_with_lineage(event, lineage)
    if inserted:
        if event.outbox_state == OutboxState.PENDING:
            # Immediately in autocommit (the statement above committed); after the
            # enclosing transaction when there is one.
            transaction.on_commit(outbox_wake)
        return AcceptResult(event=event, duplicate=False)
    existing = Event.objects.filter(
        caller=caller, idempotency_key=idempotency_key, status=EventStatus.ACCEPTED
    ).first()
    if existing is None:  # the winner rolled back meanwhile: try again
        return event_accept(
            caller=caller,
            payload=payload,
            idempotency_key=idempotency_key,
            request_id=request_id,
            auth_pending=auth_pending,
            pending_token=pending_token,
        )
    if existing.payload_hash != payload_hash:
        raise IdempotencyConflict(existing)
    return AcceptResult(event=existing, duplicate=True)


@functools.cache
def _event_defaults() -> tuple[Any, Any]:
    """`uid`'s field (its default is called per event) and `received_at`'s database default,
    as Django leaves it on an unsaved row: one shared instance, as audit_build's `at`."""
    return Event._meta.get_field("uid"), Event._meta.get_field("received_at").get_default()


def _event_build(
    *,
    caller: str,
    event_type: str,
    idempotency_key: str,
    payload_hash: str,
    ordering_key: str,
    sequence: int | None,
    recipient: dict[str, Any],
    data: dict[str, Any],
    occurred_at: Any,
    expires_at: Any,
    request_id: str,
    status: str,
    pending_token: str,
    outbox_state: str,
) -> Event:
    """An unsaved event, built with positional values in the order of the model's fields:
    Django's fast path, a quarter of the cost of keywords (which look up every field's
    default) on the ack path. tests/events/test_event_build.py pins the order."""
    uid, received_at = _event_defaults()
    return Event(
        None,
        uid.get_default(),
        caller,
        event_type,
        idempotency_key,
        payload_hash,
        ordering_key,
        sequence,
        recipient["id"],
        recipient,
        data,
        occurred_at,
        expires_at,
        request_id,
        status,
        "",  # status_reason
        pending_token,
        outbox_state,
        received_at,
        None,  # handed_off_at
    )


def _received_record(event: Event, lineage: dict[str, Any]) -> AuditRecord:
    return audit_build(
        kind="event.received",
        request_id=event.request_id,
        event_uid=event.uid,
        recipient_id=event.recipient_id,
        actor=event.caller,
        data=lineage,
    )


def _insert_with_lineage(event: Event, lineage: dict[str, Any]) -> bool:
    """The portable path: one transaction, the unique index decides between duplicates."""
    try:
        with transaction.atomic():
            if event.outbox_state == OutboxState.PENDING and _behind_auth_pending(event):
                event.outbox_state = OutboxState.HELD
            event.save(force_insert=True)
            _received_record(event, lineage).save(force_insert=True)
    except IntegrityError:
        if not Event.objects.filter(
            caller=event.caller, idempotency_key=event.idempotency_key, status=EventStatus.ACCEPTED
        ).exists():
            raise  # not a key collision: a real integrity problem
        return False
    return True


def _behind_auth_pending(event: Event) -> bool:
    return Event.objects.filter(
        status=EventStatus.AUTH_PENDING, ordering_key=event.ordering_key
    ).exists()


# The event and its lineage row in one statement: one round trip, atomic by itself, and
# ON CONFLICT lets the unique index decide between concurrent duplicates (a loser waits for
# the winner's commit, then inserts nothing). On a 2-core machine the ack path's cost was
# mostly round trips (BEGIN, INSERT, INSERT, COMMIT), each waiting for PostgreSQL's turn.
# Built from the models' metadata, so a new field of either model is in it. The outbox state
# is decided in the same statement: an accepted event whose ordering key has an auth_pending
# event is held behind it (a partial index answers that; usually empty). Only accepted events
# hold an idempotency key (a partial unique index), so an unverified token cannot squat one.
@functools.cache
def _insert_pg_sql() -> str:
    table = quote(Event._meta.db_table)
    key = ", ".join(column(Event, name)[0] for name in ("caller", "idempotency_key"))
    status, ordering, outbox = (
        column(Event, name)[0] for name in ("status", "ordering_key", "outbox_state")
    )
    held_behind = (
        f"CASE WHEN e.{outbox} = '{OutboxState.PENDING}' AND EXISTS ("  # noqa: S608 -- identifiers from _meta, values from our TextChoices
        f"SELECT 1 FROM {table} p WHERE p.{status} = '{EventStatus.AUTH_PENDING}' "
        f"AND p.{ordering} = e.{ordering}) THEN '{OutboxState.HELD}' ELSE e.{outbox} END"
    )
    returned = ", ".join(column(Event, f.name)[0] for f in _returned_fields())
    return (
        f"WITH ev AS ({insert_row_sql(Event, 'e', {'outbox_state': held_behind})} "  # noqa: S608
        f"ON CONFLICT ({key}) WHERE {status} = '{EventStatus.ACCEPTED}' DO NOTHING "
        f"RETURNING {returned}), "
        f"lineage AS ({insert_row_sql(AuditRecord, 'l')} CROSS JOIN ev) "
        f"SELECT {returned} FROM ev"
    )


@functools.cache
def _returned_fields() -> tuple[Any, ...]:
    """What the database decides: the primary key, the columns with a database default, and
    the outbox state (held behind an auth_pending event of the ordering key)."""
    return tuple(
        f
        for f in Event._meta.concrete_fields
        if f.primary_key or f.has_db_default() or f.name == "outbox_state"
    )


def _insert_with_lineage_pg(event: Event, lineage: dict[str, Any]) -> bool:
    record = _received_record(event, lineage)
    row = _insert_pg_row(insert_row_params(event) + insert_row_params(record))
    if row is None:
        return False
    for field, value in zip(_returned_fields(), row, strict=True):
        setattr(event, field.attname, value)
    event._state.adding = False
    event._state.db = "default"
    return True


def _insert_pg_row(params: list[Any]) -> tuple[Any, ...] | None:
    """The intake statement's row, run prepared (comcenter.lib.db.prepared_rows): its text
    never changes, so PostgreSQL parses and plans it once per connection instead of on every
    request, which Django's cursor made it do (bench/NOTES.md). None: a duplicate key."""
    rows = prepared_rows(_insert_pg_sql(), params)
    return rows[0] if rows else None


def event_release_verified(*, event: Event, actor: str) -> str:
    """An auth_pending event whose token verified: accept it and hand it to the outbox.

    Its idempotency key is settled only now. When an accepted event of the caller already
    holds the key (the caller retried once the identity provider was back), this one is its
    duplicate and is rejected as such (never delivered twice), or, with another payload, an
    idempotency conflict. Returns "released", "duplicate", "conflict", or "" when another
    verifier settled the event first."""
    try:
        with transaction.atomic():
            holder = _key_holder(event)
            if holder is None:
                updated = Event.objects.filter(pk=event.pk, status=EventStatus.AUTH_PENDING).update(
                    status=EventStatus.ACCEPTED,
                    outbox_state=OutboxState.PENDING,
                    pending_token="",
                    status_reason="verified after identity provider recovered",
                )
                if updated:
                    _settled(event, kind="event.verified", actor=actor, to_outbox=True)
                return "released" if updated else ""
    except IntegrityError:
        # An accepted event of the key committed between the check and the update.
        holder = _key_holder(event)
        if holder is None:
            raise
    if holder.payload_hash == event.payload_hash:
        outcome, reason = "duplicate", f"duplicate: the key is held by accepted event {holder.uid}"
    else:
        outcome = "conflict"
        reason = f"idempotency_conflict: accepted event {holder.uid} holds the key"
    return outcome if event_reject_pending(event=event, reason=reason, actor=actor) else ""


def _key_holder(event: Event) -> Event | None:
    """The accepted event holding `event`'s idempotency key, if any."""
    return (
        Event.objects.filter(
            caller=event.caller,
            idempotency_key=event.idempotency_key,
            status=EventStatus.ACCEPTED,
        )
        .exclude(pk=event.pk)
        .first()
    )


def event_release_held(*, event: Event, actor: str) -> bool:
    """An accepted event that waited behind an auth_pending event of its ordering key, now
    settled: hand it to the outbox (after that event, so the key keeps its receipt order)."""
    with transaction.atomic():
        updated = Event.objects.filter(
            pk=event.pk, status=EventStatus.ACCEPTED, outbox_state=OutboxState.HELD
        ).update(outbox_state=OutboxState.PENDING)
        if updated:
            reason = "no earlier auth_pending event of its ordering key"
            _settled(event, kind="event.released", actor=actor, reason=reason, to_outbox=True)
    return bool(updated)


def event_reject_pending(*, event: Event, reason: str, actor: str) -> bool:
    """An auth_pending event whose token failed verification: reject it, audited."""
    with transaction.atomic():
        updated = Event.objects.filter(pk=event.pk, status=EventStatus.AUTH_PENDING).update(
            status=EventStatus.REJECTED,
            outbox_state=OutboxState.HELD,
            pending_token="",
            status_reason=reason[:255],
        )
        if updated:
            _settled(event, kind="event.rejected", actor=actor, reason=reason[:255])
    return bool(updated)


def _settled(
    event: Event, *, kind: str, actor: str, reason: str = "", to_outbox: bool = False
) -> None:
    """The lineage row of an event the verifier settled (inside its transaction), and the
    outbox's wake-up after the commit when the event now goes to delivery."""
    audit_append(
        kind=kind,
        request_id=event.request_id,
        event_uid=event.uid,
        recipient_id=event.recipient_id,
        actor=actor,
        data={"reason": reason} if reason else None,
    )
    if to_outbox:
        transaction.on_commit(outbox_wake)


def event_mark_handed_off(*, event_ids: list[int], noted: Collection[int] = ()) -> int:
    """Consumer side of the outbox: these events' messages now exist. An event in `noted`
    gets no `outbox.handed_off` row: the lineage rows of its messages record the hand-off
    (only an event that produced no message has one)."""
    if not event_ids:
        return 0
    quiet = set(noted)
    rest = [pk for pk in event_ids if pk not in quiet]
    notes = (
        [
            audit_build(kind="outbox.handed_off", request_id=rid, event_uid=uid, recipient_id=rcp)
            for uid, rid, rcp in Event.objects.filter(pk__in=rest, outbox_state=OutboxState.PENDING)
            .order_by("id")
            .values_list("uid", "request_id", "recipient_id")
        ]
        if rest
        else []
    )
    updated = Event.objects.filter(pk__in=event_ids, outbox_state=OutboxState.PENDING).update(
        outbox_state=OutboxState.DONE, handed_off_at=Now()
    )
    audit_append_many(notes)
    return updated
