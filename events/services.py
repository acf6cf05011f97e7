"""Writes of the events app: event types and event intake."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models.functions import Now

from audit.services import audit_append, audit_append_many, audit_build
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
    the unique index on (caller, idempotency_key): of concurrent duplicates exactly one insert
    commits; the others fail on the index, then read the winner and compare payload hashes."""
    # Timestamps as canonical ISO text, so the payload hash does not depend on how the
    # caller formatted them (and datetimes from any caller hash at all).
    payload = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in payload.items()}
    payload_hash = json_hash(payload)
    recipient = payload["recipient"]
    status = EventStatus.AUTH_PENDING if auth_pending else EventStatus.ACCEPTED
    event = Event(
        caller=caller,
        event_type=payload["event_type"],
        idempotency_key=idempotency_key,
        payload_hash=payload_hash,
        ordering_key=payload.get("ordering_key") or recipient["id"],
        sequence=payload.get("sequence"),
        recipient_id=recipient["id"],
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
    if connection.vendor == "postgresql":
        inserted = _insert_with_lineage_pg(event, lineage)
    else:
        inserted = _insert_with_lineage(event, lineage)
    if inserted:
        if not auth_pending:
            # Immediately in autocommit (the statement above committed); after the
            # enclosing transaction when there is one.
            transaction.on_commit(outbox_wake)
        return AcceptResult(event=event, duplicate=False)
    existing = Event.objects.filter(caller=caller, idempotency_key=idempotency_key).first()
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


def _insert_with_lineage(event: Event, lineage: dict[str, Any]) -> bool:
    """The portable path: one transaction, the unique index decides between duplicates."""
    try:
        with transaction.atomic():
            event.save(force_insert=True)
            audit_append(
                kind="event.received",
                request_id=event.request_id,
                event_uid=event.uid,
                recipient_id=event.recipient_id,
                actor=event.caller,
                data=lineage,
            )
    except IntegrityError:
        if not Event.objects.filter(
            caller=event.caller, idempotency_key=event.idempotency_key
        ).exists():
            raise  # not a key collision: a real integrity problem
        return False
    return True


# The event and its lineage row in one statement: one round trip, atomic by itself, and
# ON CONFLICT lets the unique index decide between concurrent duplicates (a loser waits for
# the winner's commit, then inserts nothing). On a 2-core machine the ack path's cost was
# mostly round trips (BEGIN, INSERT, INSERT, COMMIT), each waiting for PostgreSQL's turn.
_INSERT_PG = """
WITH ev AS (
    INSERT INTO events_event (
        uid, caller, event_type, idempotency_key, payload_hash, ordering_key, sequence,
        recipient_id, recipient, data, occurred_at, expires_at, request_id, status,
        status_reason, pending_token, outbox_state
    ) VALUES (
        %s::uuid, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s::timestamptz,
        %s::timestamptz, %s, %s, '', %s, %s
    )
    ON CONFLICT (caller, idempotency_key) DO NOTHING
    RETURNING id, received_at
), lineage AS (
    INSERT INTO audit_auditrecord (
        kind, request_id, event_uid, message_uid, recipient_id, actor, data
    )
    SELECT 'event.received', %s, %s::uuid, NULL, %s, %s, %s::jsonb FROM ev
)
SELECT id, received_at FROM ev
"""


def _insert_with_lineage_pg(event: Event, lineage: dict[str, Any]) -> bool:
    uid = str(event.uid)
    with connection.cursor() as cursor:
        cursor.execute(
            _INSERT_PG,
            [
                uid,
                event.caller,
                event.event_type,
                event.idempotency_key,
                event.payload_hash,
                event.ordering_key,
                event.sequence,
                event.recipient_id,
                json.dumps(event.recipient),
                json.dumps(event.data),
                event.occurred_at,
                event.expires_at,
                event.request_id,
                event.status,
                event.pending_token,
                event.outbox_state,
                event.request_id,
                uid,
                event.recipient_id,
                event.caller,
                json.dumps(lineage),
            ],
        )
        row = cursor.fetchone()
    if row is None:
        return False
    event.id, event.received_at = row
    event._state.adding = False
    event._state.db = "default"
    return True


def event_release_verified(*, event: Event, actor: str) -> bool:
    """An auth_pending event whose token verified: accept it and hand it to the outbox."""
    with transaction.atomic():
        updated = Event.objects.filter(pk=event.pk, status=EventStatus.AUTH_PENDING).update(
            status=EventStatus.ACCEPTED,
            outbox_state=OutboxState.PENDING,
            pending_token="",
            status_reason="verified after identity provider recovered",
        )
        if updated:
            audit_append(
                kind="event.verified",
                request_id=event.request_id,
                event_uid=event.uid,
                recipient_id=event.recipient_id,
                actor=actor,
            )
            transaction.on_commit(outbox_wake)
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
            audit_append(
                kind="event.rejected",
                request_id=event.request_id,
                event_uid=event.uid,
                recipient_id=event.recipient_id,
                actor=actor,
                data={"reason": reason[:255]},
            )
    return bool(updated)


def event_mark_handed_off(*, event_ids: list[int]) -> int:
    """Consumer side of the outbox: these events' messages now exist."""
    if not event_ids:
        return 0
    events = list(
        Event.objects.filter(pk__in=event_ids, outbox_state=OutboxState.PENDING).values_list(
            "pk", "uid", "request_id", "recipient_id"
        )
    )
    updated = Event.objects.filter(
        pk__in=[e[0] for e in events], outbox_state=OutboxState.PENDING
    ).update(outbox_state=OutboxState.DONE, handed_off_at=Now())
    audit_append_many(
        audit_build(kind="outbox.handed_off", request_id=rid, event_uid=uid, recipient_id=rcp)
        for _, uid, rid, rcp in events
    )
    return updated
