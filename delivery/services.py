"""Writes of the delivery app.

`message_transition` is the only code that changes a message's state: it writes the new state
and the lineage row (and the provider attempt, when there is one) in one transaction, so the
lineage can never disagree with the table. Everything else here — turning outbox events into
messages, dead-letter review, lease recovery, expiry — calls it or creates rows with their
lineage in the same transaction."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.db.models.functions import Now

from audit.models import AuditRecord
from audit.services import audit_append, audit_append_many, audit_build
from comcenter.lib.bulk import is_postgres, rows_insert
from comcenter.lib.metrics import DELIVERIES, E2E_LATENCY
from delivery.bulk import transition_pg
from delivery.clock import db_now
from delivery.models import (
    FINAL_STATES,
    WAITING_STATES,
    Attempt,
    AttemptOutcome,
    Lane,
    Message,
    MessageState,
    Route,
    Suppression,
    WorkerLease,
)
from delivery.providers.registry import provider_for
from events.handoff import outbox_wake_consumed
from events.models import Event, EventStatus, OutboxState
from events.services import event_mark_handed_off
from templates.models import Template
from templates.selectors import template_for

log = logging.getLogger(__name__)

# Where each channel finds its address in the event's recipient object.
ADDRESS_FIELDS = {"email": "email", "sms": "phone"}
# States counted as delivery outcomes in the metrics (claims and releases are not outcomes).
OUTCOME_STATES = frozenset(FINAL_STATES) | {MessageState.RETRYING, MessageState.HELD}
EXPAND_LOCK = "outbox-expand"
ROUTE_EDITABLE = ("event_type", "template_key", "channel", "enabled", "position", "description")


# --- the one state-change service -----------------------------------------------------------


@dataclass
class Change:
    """One message's part of a transition. `message` must have its `event` loaded (the
    lineage row names the event and its request id)."""

    message: Message
    # Column values for this message only (rendered_hash, last_error, next_attempt_at ...).
    values: dict[str, Any] = field(default_factory=dict)
    # Extra lineage facts (never an address or a body).
    data: dict[str, Any] = field(default_factory=dict)
    # The provider attempt this change records; written even if the change itself is fenced
    # out, because the provider was called either way.
    attempt: Attempt | None = None
    # Seconds from the event's receipt to this outcome, for the end-to-end histogram.
    latency: float | None = None


def message_transition(
    *,
    changes: Sequence[Change],
    state: str,
    from_states: Iterable[str],
    reason: str,
    fenced: bool = False,
    common: dict[str, Any] | None = None,
    actor: str = "",
    durable: bool = True,
) -> list[Message]:
    """Move messages to `state` and write one lineage row per message that moved, plus the
    changes' provider attempts, in one transaction.

    A message moves only if it is still in the state the caller loaded it in, and that state
    is one of `from_states`. With `fenced`, it must also still carry the caller's
    `lease_token`: a worker whose lease expired and was superseded writes nothing but its
    attempt (marked stale). A fenced change leaves `dispatching` and frees its lane. `common`
    values (plain or ORM expressions) apply to every message.

    `durable=False` lets PostgreSQL acknowledge the commit before its WAL flush (used for the
    dispatcher's writes: a database crash may then forget the last fraction of a second of
    claims and results, whose messages are sent again: at least once, never lost).
    Returns the messages that moved, with their new `lease_token`."""
    allowed = {str(s) for s in from_states}
    base = {"state": state, "updated_at": Now(), **(common or {})}
    # One statement per group of rows that set the same columns with the same expressions
    # (Now(), Now() + delay); plain values vary per row.
    groups: dict[tuple[tuple[str, ...], frozenset[tuple[str, Any]]], list[Change]] = {}
    for change in changes:
        expressions = frozenset(
            (k, v) for k, v in change.values.items() if hasattr(v, "resolve_expression")
        )
        plain = tuple(sorted(set(change.values) - {k for k, _ in expressions}))
        groups.setdefault((plain, expressions), []).append(change)
    moved: dict[int, int] = {}
    # On PostgreSQL one group is one statement: atomic by itself, no BEGIN/COMMIT round trips.
    single = is_postgres() and len(groups) == 1 and not connection.in_atomic_block
    with contextlib.nullcontext() if single else transaction.atomic():
        for (plain, expressions), group in groups.items():
            values = {**base, **dict(expressions)}
            lineage = {
                c.message.pk: _lineage(c, c.message.state, state, reason, actor) for c in group
            }
            write = _write_pg if is_postgres() else _write_orm
            moved.update(write(group, plain, values, allowed, fenced, lineage, durable))
        transaction.on_commit(
            lambda: _observe([c for c in changes if c.message.pk in moved], state)
        )
    for change in changes:
        message = change.message
        if message.pk not in moved:
            continue
        message.state = state
        message.lease_token = moved[message.pk]
        for name, value in change.values.items():
            if not hasattr(value, "resolve_expression"):
                setattr(message, name, value)
    return [c.message for c in changes if c.message.pk in moved]


def _write_orm(
    group: list[Change],
    plain: tuple[str, ...],
    values: dict[str, Any],
    allowed: set[str],
    fenced: bool,
    lineage: dict[int, AuditRecord],
    durable: bool,
) -> dict[int, int]:
    """Row by row (SQLite: its IMMEDIATE transaction already excludes other writers)."""
    moved: list[int] = []
    for change in group:
        message = change.message
        if message.state not in allowed:
            continue
        rows = Message.objects.filter(pk=message.pk, state=message.state)
        if fenced:
            rows = rows.filter(lease_token=message.lease_token)
        if rows.update(**values, **{name: change.values[name] for name in plain}):
            moved.append(message.pk)
    done = [c.message for c in group if c.message.pk in moved]
    if fenced and values["state"] != MessageState.DISPATCHING:
        # Unless another message of the lane is dispatching (a lost worker's lane claimed
        # again after its lease ran out).
        Lane.objects.filter(pk__in={m.lane_id for m in done}).exclude(
            messages__state=MessageState.DISPATCHING
        ).update(busy_until=None)
    if values["state"] in FINAL_STATES:
        for message in done:
            if message.sequence:
                Lane.objects.filter(pk=message.lane_id, done_sequence__lt=message.sequence).update(
                    done_sequence=message.sequence
                )
    attempts = []
    for change in group:
        if change.attempt is not None:
            change.attempt.stale = change.message.pk not in moved
            attempts.append(change.attempt)
    Attempt.objects.bulk_create(attempts)
    audit_append_many(lineage[pk] for pk in moved)
    return dict(Message.objects.filter(pk__in=moved).values_list("pk", "lease_token"))


def _write_pg(
    group: list[Change],
    plain: tuple[str, ...],
    values: dict[str, Any],
    allowed: set[str],
    fenced: bool,
    lineage: dict[int, AuditRecord],
    durable: bool,
) -> dict[int, int]:
    candidates = [c for c in group if c.message.state in allowed]
    return transition_pg(
        rows=[
            (c.message.pk, c.message.state, c.message.lease_token, [c.values[n] for n in plain])
            for c in candidates
        ],
        columns=plain,
        values=values,
        fenced=fenced,
        attempts=[c.attempt for c in group if c.attempt is not None],
        lineage=list(lineage.items()),
        free_lanes=fenced and values["state"] != MessageState.DISPATCHING,
        mark_done=values["state"] in FINAL_STATES,
        durable=durable,
    )


def _lineage(change: Change, old: str, state: str, reason: str, actor: str) -> AuditRecord:
    message = change.message
    event = message.event
    data: dict[str, Any] = {"from": old, "to": state, "channel": message.channel}
    if reason:
        data["reason"] = reason
    data.update(change.data)
    return audit_build(
        kind=f"message.{state}",
        request_id=event.request_id,
        event_uid=event.uid,
        message_uid=message.uid,
        recipient_id=message.recipient_id,
        actor=actor or "delivery",
        data=data,
    )


def _observe(moved: list[Change], state: str) -> None:
    if state not in OUTCOME_STATES:
        return
    for change in moved:
        message = change.message
        provider = change.values.get("provider") or message.provider or "none"
        DELIVERIES.labels(message.channel, provider, state).inc()
        if change.latency is not None and state in (MessageState.SENT, MessageState.DRY_RUN):
            E2E_LATENCY.labels(message.channel).observe(max(0.0, change.latency))


# --- routes ----------------------------------------------------------------------------------


def route_ensure(
    *,
    event_type: str,
    template_key: str,
    channel: str,
    position: int = 0,
    enabled: bool = True,
    actor: str = "",
) -> Route:
    """The route for (event type, template, channel), created if missing (idempotent: an
    existing route keeps what operators changed)."""
    with transaction.atomic():
        route, created = Route.objects.get_or_create(
            event_type=event_type,
            template_key=template_key,
            channel=channel,
            defaults={"position": position, "enabled": enabled},
        )
        if created:
            audit_append(
                kind="route.created",
                actor=actor,
                data={
                    "route": route.pk,
                    "event_type": event_type,
                    "template": template_key,
                    "channel": channel,
                },
            )
    return route


# --- the outbox consumer ---------------------------------------------------------------------


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
    lanes = _lanes_for(events)
    templates: dict[tuple[str, str], Template | None] = {}
    # The gap wait starts when a message enters its lane. Counting from the event's receipt
    # would let an outbox backlog longer than the wait release a successor before its
    # predecessor (received just before or after it) was even expanded.
    gap_until = db_now() + timedelta(seconds=settings.ORDERING_GAP_WAIT)
    messages: list[Message] = []
    notes: list[AuditRecord] = []
    settle: list[tuple[Lane, int]] = []
    for event in events:
        lane = lanes[(event.caller, event.ordering_key)]
        recipient = event.recipient if isinstance(event.recipient, dict) else {}
        locale = str(recipient.get("locale") or "")
        created = 0
        if not routes.get(event.event_type):
            notes.append(_event_note(event, "delivery.no_route", {"event_type": event.event_type}))
        for route in routes.get(event.event_type, []):
            address = str(recipient.get(ADDRESS_FIELDS.get(route.channel, "")) or "")
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
                    lane=lane,
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
            created += 1
        if not created and event.sequence:
            settle.append((lane, event.sequence))
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
    for lane, sequence in settle:
        Lane.objects.filter(pk=lane.pk, done_sequence__lt=sequence).update(done_sequence=sequence)


def _event_note(event: Event, kind: str, data: dict[str, Any]) -> AuditRecord:
    return audit_build(
        kind=kind,
        request_id=event.request_id,
        event_uid=event.uid,
        recipient_id=event.recipient_id,
        actor="delivery",
        data=data,
    )


def _lanes_for(events: list[Event]) -> dict[tuple[str, str], Lane]:
    keys = {(event.caller, event.ordering_key) for event in events}
    callers = {caller for caller, _ in keys}
    ordering_keys = {key for _, key in keys}

    def existing() -> dict[tuple[str, str], Lane]:
        found = Lane.objects.filter(caller__in=callers, ordering_key__in=ordering_keys)
        return {(lane.caller, lane.ordering_key): lane for lane in found}

    lanes = existing()
    missing = keys - set(lanes)
    if missing:
        Lane.objects.bulk_create(
            [Lane(caller=caller, ordering_key=key) for caller, key in missing],
            ignore_conflicts=True,
        )
        lanes = existing()
    return lanes


# --- recovery and expiry (run by the ticker) ---------------------------------------------------


def messages_recover_expired_leases(*, limit: int = 500) -> int:
    """Messages whose worker's lease ran out (killed, hung, lost its database) go back to
    `retrying`, due now, with an `abandoned` attempt: the send may or may not have happened.
    Such a message counts the lost attempt; at the attempt limit it is dead."""
    stale = list(
        Message.objects.filter(state=MessageState.DISPATCHING, lease_until__lt=Now())
        .select_related("event")
        .order_by("lease_until")[:limit]
    )
    changes: dict[str, list[Change]] = {MessageState.RETRYING: [], MessageState.DEAD: []}
    for message in stale:
        number = message.attempts + 1
        attempt = Attempt(
            message=message,
            number=number,
            lease_token=message.lease_token,
            # When the claim began, as near as the row tells (the lease it took).
            started_at=message.lease_until - timedelta(seconds=settings.DISPATCH_LEASE_SECONDS),
            outcome=AttemptOutcome.ABANDONED,
            provider=provider_for(message.channel).name,
            error="lease expired before the worker recorded a result",
            idempotency_key=str(message.uid),
        )
        dead = number >= settings.RETRY_MAX_ATTEMPTS
        changes[MessageState.DEAD if dead else MessageState.RETRYING].append(
            Change(
                message=message,
                values={
                    "attempts": number,
                    "lease_until": None,
                    "next_attempt_at": Now(),
                    "last_error": "worker lost its lease; outcome unknown",
                },
                attempt=attempt,
            )
        )
    moved = 0
    for state, group in changes.items():
        moved += len(
            message_transition(
                changes=group,
                state=state,
                from_states=[MessageState.DISPATCHING],
                reason="lease expired",
                fenced=True,
            )
        )
    if moved:
        log.warning("recovered messages whose worker lost its lease", extra={"count": moved})
    return moved


def messages_expire_due(*, limit: int = 500) -> int:
    """Waiting messages past their `expires_at` become expired without waiting for their turn:
    they will never be sent, so they need not hold their key either."""
    due = list(
        Message.objects.filter(state__in=WAITING_STATES, expires_at__lte=Now())
        .select_related("event")
        .order_by("expires_at")[:limit]
    )
    return len(
        message_transition(
            changes=[Change(message=m) for m in due],
            state=MessageState.EXPIRED,
            from_states=WAITING_STATES,
            reason="expires_at passed before dispatch",
            common={"next_attempt_at": Now()},
        )
    )


# --- dead-letter queue -----------------------------------------------------------------------


def message_requeue_dead(*, message_ids: Iterable[int], actor: str) -> int:
    """Put dead messages back in line with a fresh attempt budget; returns how many moved.
    A requeued message is older than its key's later messages, so it goes first."""
    dead = list(
        Message.objects.filter(pk__in=list(message_ids), state=MessageState.DEAD).select_related(
            "event"
        )
    )
    return len(
        message_transition(
            changes=[Change(message=m) for m in dead],
            state=MessageState.PENDING,
            from_states=[MessageState.DEAD],
            reason="requeued from the dead-letter queue",
            common={"attempts": 0, "next_attempt_at": Now(), "last_error": ""},
            actor=actor,
        )
    )


def message_discard_dead(*, message_ids: Iterable[int], actor: str) -> int:
    """Delete dead messages before their retention ends (an operator decided), with lineage."""
    return _delete_dead(
        Message.objects.filter(pk__in=list(message_ids), state=MessageState.DEAD),
        kind="message.discarded",
        actor=actor,
    )


def messages_purge_dead(*, limit: int = 1000) -> int:
    """Delete dead messages older than DLQ_RETENTION_HOURS; returns how many."""
    cutoff = Now() - timedelta(hours=settings.DLQ_RETENTION_HOURS)
    total = 0
    while True:
        batch = list(
            Message.objects.filter(state=MessageState.DEAD, updated_at__lt=cutoff).values_list(
                "pk", flat=True
            )[:limit]
        )
        if not batch:
            return total
        total += _delete_dead(
            Message.objects.filter(pk__in=batch, state=MessageState.DEAD, updated_at__lt=cutoff),
            kind="message.purged",
            actor="delivery",
        )


def _delete_dead(rows: Any, *, kind: str, actor: str) -> int:
    with transaction.atomic():
        doomed = list(rows.select_for_update().select_related("event").order_by("id"))
        if not doomed:
            return 0
        rows_insert(
            AuditRecord,
            [
                audit_build(
                    kind=kind,
                    request_id=m.event.request_id,
                    event_uid=m.event.uid,
                    message_uid=m.uid,
                    recipient_id=m.recipient_id,
                    actor=actor,
                    data={"channel": m.channel, "attempts": m.attempts, "last_error": m.last_error},
                )
                for m in doomed
            ],
        )
        Message.objects.filter(pk__in=[m.pk for m in doomed]).delete()
    return len(doomed)


# --- suppressions ----------------------------------------------------------------------------


def suppression_add(*, channel: str, address: str, reason: str, actor: str, note: str = "") -> bool:
    """Stop sending to an address on a channel; returns False if it was already suppressed."""
    with transaction.atomic():
        _row, created = Suppression.objects.get_or_create(
            channel=channel,
            address=address.strip().lower() if channel == "email" else address.strip(),
            defaults={"reason": reason, "note": note},
        )
        if created:
            audit_append(
                kind="suppression.added",
                actor=actor,
                data={"suppression": _row.pk, "channel": channel, "reason": reason},
            )
    return created


def suppression_remove(*, suppression: Suppression, actor: str) -> None:
    """Send to the address again (an operator lifted the opt-out or the bounce), with lineage."""
    with transaction.atomic():
        audit_append(
            kind="suppression.removed",
            actor=actor,
            data={
                "suppression": suppression.pk,
                "channel": suppression.channel,
                "reason": suppression.reason,
            },
        )
        suppression.delete()


def suppressed_addresses(*, channel: str, addresses: Iterable[str]) -> set[str]:
    """Which of these addresses are suppressed on `channel` (compared as stored)."""
    wanted = {a.strip().lower() if channel == "email" else a.strip() for a in addresses}
    if not wanted:
        return set()
    return set(
        Suppression.objects.filter(channel=channel, address__in=wanted).values_list(
            "address", flat=True
        )
    )


# --- worker leases ---------------------------------------------------------------------------


def worker_lease_take(*, name: str, holder: str, seconds: float) -> bool:
    """Take or renew the named lease for `seconds` if it is free, expired or already ours.
    A conditional UPDATE checked by row count: of concurrent takers exactly one matches the
    row (PostgreSQL re-checks the condition after waiting for the row lock)."""
    WorkerLease.objects.get_or_create(name=name)
    free = Q(until__isnull=True) | Q(until__lt=Now()) | Q(holder=holder)
    return bool(
        WorkerLease.objects.filter(free, name=name).update(
            holder=holder, until=Now() + timedelta(seconds=seconds)
        )
    )


def worker_lease_release(*, name: str, holder: str) -> None:
    WorkerLease.objects.filter(name=name, holder=holder).update(holder="", until=None)


def route_save(*, route: Route, actor: str, created: bool) -> Route:
    """Save an operator's edit of a route, audited (the admin's form calls this)."""
    with transaction.atomic():
        route.updated_at = Now()
        if created:
            route.save(force_insert=True)
        else:
            route.save(update_fields=[*ROUTE_EDITABLE, "updated_at"])
        route.refresh_from_db(fields=["updated_at"])
        audit_append(
            kind="route.created" if created else "route.changed",
            actor=actor,
            data={
                "route": route.pk,
                "event_type": route.event_type,
                "template": route.template_key,
                "channel": route.channel,
                "enabled": route.enabled,
                "position": route.position,
            },
        )
    return route


def route_delete(*, route: Route, actor: str) -> None:
    """Delete a route that never produced a message (one that did is protected: disable it)."""
    with transaction.atomic():
        audit_append(
            kind="route.deleted",
            actor=actor,
            data={
                "route": route.pk,
                "event_type": route.event_type,
                "template": route.template_key,
            },
        )
        route.delete()
