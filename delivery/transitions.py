"""Writes of the delivery app.

`message_transition` is the only code that changes a message's state: it writes the new state
and the lineage row (and the provider attempt, when there is one) in one transaction, so the
lineage can never disagree with the table. Everything else here — turning outbox events into
messages, dead-letter review, lease recovery, expiry — calls it or creates rows with their
lineage in the same transaction."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.db.models.functions import Now

from audit.models import AuditRecord
from audit.services import audit_append_many, audit_build
from comcenter.lib.bulk import is_postgres
from comcenter.lib.metrics import DELIVERIES, E2E_LATENCY
from delivery.bulk import transition_pg
from delivery.models import FINAL_STATES, Attempt, Lane, Message, MessageState

# States counted as delivery outcomes in the metrics (claims and releases are not outcomes).
OUTCOME_STATES = frozenset(FINAL_STATES) | {MessageState.RETRYING, MessageState.HELD}


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
