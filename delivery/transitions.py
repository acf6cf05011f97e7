"""The message state machine: one table of every allowed edge with its side effects, and
`message_transition`, the only code that changes a message's state.

`message_transition` writes the new state and the lineage row (and the provider attempt,
when there is one) in one transaction, so the lineage can never disagree with the table. It
moves a message only along an edge of `TRANSITIONS`, from the state the caller loaded it in,
and applies that edge's effects; no caller names the states it accepts. A new state is one
`Edge` per way in or out (and a line in docs/architecture.md, which
tests/delivery/test_transitions.py compares with this table).

Two writers apply the same edges: `_write_orm` (SQLite, the embedded default: row by row,
its IMMEDIATE transaction already excludes other writers) and `transition_pg` in
delivery/transition_sql.py (PostgreSQL: one statement per group of rows). Both read the
effects from the edge, never from conditions of their own; tests/delivery/test_parity.py
runs both on the same fixtures and compares the rows."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Now

from audit.models import AuditRecord
from audit.services import audit_append_many, audit_build
from comcenter.lib.db import is_postgres
from comcenter.lib.metrics import DELIVERIES, E2E_LATENCY
from delivery.models import FINAL_STATES, WAITING_STATES, Attempt, Lane, Message, MessageState
from delivery.transition_sql import transition_pg


class Effect(StrEnum):
    """What a move does besides setting the state and writing its lineage row."""

    # lease_token + 1 and lease_until = now + DISPATCH_LEASE_SECONDS: the claim's fencing
    # token (the claim marks the lane busy itself, before it moves the messages).
    TAKES_LEASE = "takes the lease"
    # Moves only while the message still carries the caller's lease_token: a worker whose
    # lease expired and was superseded writes nothing but its attempt (marked stale).
    FENCED = "fenced on the lease token"
    # lease_until cleared, and lane.busy_until too unless another message of the lane is
    # dispatching (a lost worker's lane claimed again after its lease ran out).
    FREES_LANE = "frees the lane"
    # lane.done_sequence raised to the message's sequence: its successor is in order now.
    RAISES_DONE = "raises done_sequence"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    # Who takes this edge (for the diagram and the reader; the writers do not read it).
    by: str
    effects: frozenset[Effect] = frozenset()


S = MessageState
WAITING = WAITING_STATES  # pending, held, retrying
LEASE = frozenset({Effect.TAKES_LEASE})
LEAVE = frozenset({Effect.FENCED, Effect.FREES_LANE})
FINISH = LEAVE | {Effect.RAISES_DONE}
DONE = frozenset({Effect.RAISES_DONE})
NONE: frozenset[Effect] = frozenset()

# Every allowed move. A source of WAITING is one edge from each waiting state. "Dry-run
# batch": DISABLE_SEND on and not paused, no claim: the same gates and render take a waiting
# message straight to its outcome.
_TABLE: tuple[tuple[str | tuple[str, ...], str, frozenset[Effect], str], ...] = (
    # from          to               effects  taken by
    (WAITING,       S.DISPATCHING,   LEASE,   "claim"),
    (S.DISPATCHING, S.SENT,          FINISH,  "provider accepted"),
    (S.DISPATCHING, S.RETRYING,      LEAVE,   "transient error; lease or liveness expired"),
    (S.DISPATCHING, S.DEAD,          FINISH,  "permanent/render error; attempts spent"),
    (S.DISPATCHING, S.BLOCKED,       FINISH,  "gate: template, promo or tier"),
    (S.DISPATCHING, S.SUPPRESSED,    FINISH,  "gate: suppressed address"),
    (S.DISPATCHING, S.EXPIRED,       FINISH,  "gate: expires_at passed"),
    (S.DISPATCHING, S.DRY_RUN,       FINISH,  "DISABLE_SEND turned on after the claim"),
    (S.DISPATCHING, S.HELD,          LEAVE,   "gate: DISPATCH_PAUSED"),
    (S.DISPATCHING, S.PENDING,       LEAVE,   "back in line: rate limit, lease budget, liveness"),
    (WAITING,       S.EXPIRED,       DONE,    "ticker or dry run: expires_at passed"),
    (WAITING,       S.DRY_RUN,       DONE,    "dry run"),
    (WAITING,       S.BLOCKED,       DONE,    "dry run: gate"),
    (WAITING,       S.SUPPRESSED,    DONE,    "dry run: gate"),
    (WAITING,       S.DEAD,          DONE,    "dry run: render or template error"),
    (WAITING,       S.HELD,          NONE,    "dry-run batch: gate DISPATCH_PAUSED"),
    (S.DEAD,        S.PENDING,       NONE,    "requeue from the dead-letter queue (operator)"),
    (S.BLOCKED,     S.PENDING,       NONE,    "requeue after its template was fixed (operator)"),
    (S.SENT,        S.DELIVERED,     NONE,    "receipt: delivered"),
    (S.SENT,        S.UNDELIVERED,   NONE,    "receipt: bounced, rejected, failed, opted out"),
    (S.DELIVERED,   S.UNDELIVERED,   NONE,    "receipt: a failure reported after delivery"),
)  # fmt: skip

TRANSITIONS: dict[tuple[str, str], Edge] = {
    (source, target): Edge(source, target, by, effects)
    for sources, target, effects, by in _TABLE
    for source in ((sources,) if isinstance(sources, str) else sources)
}


def transitions_markdown() -> str:
    """The table as docs/architecture.md shows it, between its `transitions` markers
    (tests/delivery/test_transitions.py keeps the two equal)."""
    lines = ["| from | to | effects | taken by |", "|---|---|---|---|"]
    for sources, target, effects, by in _TABLE:
        source = sources if isinstance(sources, str) else ", ".join(sources)
        shown = ", ".join(effect.value for effect in Effect if effect in effects) or "-"
        lines.append(f"| {source} | {target} | {shown} | {by} |")
    return "\n".join(lines) + "\n"


# The database clock as a column value, one instance for every write: rows are grouped by
# their expressions and the SET clause is cached by them (comcenter.lib.db.assignments), and
# an expression's hash is its identity, which Django computes through inspect.signature
# once per instance (a cached_property) - a fresh Now() per send cost more than its grouping.
# Safe to share: Django resolves a copy of an expression, never the instance itself.
NOW = Now()

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


# What one writer call applies: the effects of its rows' edges, the per-row columns, the
# column values shared by all rows.
@dataclass(frozen=True)
class Write:
    effects: frozenset[Effect]
    plain: tuple[str, ...]
    values: dict[str, Any]
    durable: bool

    @property
    def fenced(self) -> bool:
        return Effect.FENCED in self.effects

    @property
    def frees_lane(self) -> bool:
        return Effect.FREES_LANE in self.effects

    @property
    def raises_done(self) -> bool:
        return Effect.RAISES_DONE in self.effects


# Rows written by one statement: same edge effects, per-row columns, shared expressions.
_GroupKey = tuple[frozenset[Effect], tuple[str, ...], frozenset[tuple[str, Any]]]


def message_transition(
    *,
    changes: Sequence[Change],
    state: str,
    reason: str,
    common: dict[str, Any] | None = None,
    actor: str = "",
    durable: bool = True,
) -> list[Message]:
    """Move messages to `state` along the edges of TRANSITIONS and write one lineage row per
    message that moved, plus the changes' provider attempts, in one transaction.

    A message moves only if it is still in the state the caller loaded it in and that state
    has an edge to `state`; the edge's effects apply (see Effect). `common` values (plain or
    ORM expressions) apply to every message.

    `durable=False` lets PostgreSQL acknowledge the commit before its WAL flush (used for the
    dispatcher's writes: a database crash may then forget the last fraction of a second of
    claims and results, whose messages are sent again: at least once, never lost).
    Returns the messages that moved, with their new `lease_token`."""
    base = {"state": state, "updated_at": NOW, **(common or {})}
    # One statement per group of rows that take edges with the same effects and set the same
    # columns with the same expressions (Now(), Now() + delay); plain values vary per row.
    groups: dict[
        tuple[frozenset[Effect], tuple[str, ...], frozenset[tuple[str, Any]]], list[Change]
    ] = {}
    unmoved: list[Change] = []
    for change in changes:
        edge = TRANSITIONS.get((change.message.state, state))
        if edge is None:
            unmoved.append(change)
            continue
        expressions = frozenset(
            (k, v) for k, v in change.values.items() if hasattr(v, "resolve_expression")
        )
        plain = tuple(sorted(set(change.values) - {k for k, _ in expressions}))
        groups.setdefault((edge.effects, plain, expressions), []).append(change)
    moved: dict[int, int] = {}
    # On PostgreSQL one group is one statement: atomic by itself, no BEGIN/COMMIT round trips.
    postgres = is_postgres()
    single = postgres and len(groups) <= 1 and not unmoved and not connection.in_atomic_block
    with contextlib.nullcontext() if single else transaction.atomic():
        for (effects, plain, expressions), group in groups.items():
            write = Write(
                effects=effects,
                plain=plain,
                values={**base, **_effect_values(effects), **dict(expressions)},
                durable=durable,
            )
            lineage = {
                c.message.pk: _lineage(c, c.message.state, state, reason, actor) for c in group
            }
            writer = transition_pg if postgres else _write_orm
            moved.update(writer(group, write, lineage))
        # A change whose message is no longer where an edge to `state` starts still records
        # its provider attempt, stale.
        _attempts_insert([c for c in unmoved if c.attempt is not None], moved)
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


def _effect_values(effects: frozenset[Effect]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if Effect.TAKES_LEASE in effects:
        lease = timedelta(seconds=settings.DISPATCH_LEASE_SECONDS)
        values.update(lease_token=F("lease_token") + 1, lease_until=Now() + lease)
    if Effect.FREES_LANE in effects:
        values["lease_until"] = None
    return values


def _write_orm(
    group: list[Change], write: Write, lineage: dict[int, AuditRecord]
) -> dict[int, int]:
    """Row by row (SQLite: its IMMEDIATE transaction already excludes other writers)."""
    moved: list[int] = []
    for change in group:
        message = change.message
        rows = Message.objects.filter(pk=message.pk, state=message.state)
        if write.fenced:
            rows = rows.filter(lease_token=message.lease_token)
        if rows.update(**write.values, **{name: change.values[name] for name in write.plain}):
            moved.append(message.pk)
    done = [c.message for c in group if c.message.pk in moved]
    if write.frees_lane:
        Lane.objects.filter(pk__in={m.lane_id for m in done}).exclude(
            messages__state=MessageState.DISPATCHING
        ).update(busy_until=None)
    if write.raises_done:
        for message in done:
            if message.sequence:
                Lane.objects.filter(pk=message.lane_id, done_sequence__lt=message.sequence).update(
                    done_sequence=message.sequence
                )
    _attempts_insert([c for c in group if c.attempt is not None], moved)
    audit_append_many(lineage[pk] for pk in moved)
    return dict(Message.objects.filter(pk__in=moved).values_list("pk", "lease_token"))


def _attempts_insert(changes: list[Change], moved: Sequence[int] | dict[int, int]) -> None:
    attempts = []
    for change in changes:
        assert change.attempt is not None
        change.attempt.stale = change.message.pk not in moved
        attempts.append(change.attempt)
    if attempts:
        Attempt.objects.bulk_create(attempts)


def _lineage(change: Change, old: str, state: str, reason: str, actor: str) -> AuditRecord:
    """The lineage row of one move. An attempt's outcome names the provider, its response
    code and the provider's message id: Attempt rows are mutable and purged, the audit
    chain keeps them."""
    message = change.message
    event = message.event
    data: dict[str, Any] = {"from": old, "to": state, "channel": message.channel}
    if reason:
        data["reason"] = reason
    if change.attempt is not None:
        data["provider"] = change.attempt.provider
        data["response_code"] = change.attempt.response_code
        data["provider_message_id"] = change.values.get("provider_message_id", "")
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
