"""Claims: which due messages a worker may take next, taken a batch at a time under a lease
(the dispatch loop in delivery/dispatcher.py sends each batch through one provider session),
and the recovery of claims whose worker lost its lease.

Per-key ordering. Every message belongs to a lane (one per caller and ordering key) and has a
lane position (lane_order, event id, id), lane_order being the sequence or 0 (receipt order)
without one. A message is claimable when all of these hold:
- it is waiting (pending, retrying; held too unless DISPATCH_PAUSED) and next_attempt_at has
  come (retry backoff, rate-limit waits);
- it is the lane's head: no active message of the lane (waiting or dispatching) comes before
  it;
- its lane is free: `lane.busy_until` (the lease of the lane's message in flight) is unset or
  past;
- it is in order or has waited long enough: no sequence; or sequence <= lane.done_sequence + 1
  (done_sequence is the highest sequence of the key that reached a final state, a dead
  message included, so a dead message releases its key; or whose event produced no message
  in the lane); or its gap wait is over (`gap_until`, ORDERING_GAP_WAIT after the message
  entered its lane — not after the event's receipt, so that a backlog in the outbox cannot
  use up the wait before the predecessor had a chance to arrive — and no event received
  within ORDERING_GAP_WAIT of it is still in the outbox, so that a predecessor received in
  time but not yet expanded still goes first), in which case the claim's lineage row records
  the gap.

Claim protocol, one transaction, the same ORM code on PostgreSQL and SQLite:
1. SELECT the claimable heads of a channel in due order, LIMIT batch, FOR UPDATE OF the lane
   row SKIP LOCKED (a statement the ORM builds once per process and key, see lock_heads).
   A lane another worker is claiming right now is skipped. A lane another worker claimed
   and committed after this statement's snapshot is caught by PostgreSQL's re-check of the
   WHERE clause on the newest version of the row it locks: `busy_until` is set there, so
   the row drops out.
2. UPDATE those lanes: busy_until = now() + DISPATCH_LEASE_SECONDS.
3. UPDATE the messages to `dispatching` (only if still in the state read in step 1) with
   lease_until = now() + lease, lease_token + 1 and claimed_by = the worker's liveness record
   (delivery/liveness.py; created in this transaction), and write their lineage rows. A lane
   whose message changed meanwhile is freed again.
On SQLite there is no SKIP LOCKED (Django drops the clause); the IMMEDIATE transaction holds
the database write lock from its first statement, so the steps run with no other writer."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BooleanField, Case, Exists, F, Func, OuterRef, Q, QuerySet, Value, When
from django.db.models.functions import Now
from django.db.transaction import TransactionManagementError

from comcenter.lib.db import is_postgres
from delivery.liveness import PREFIX as LIVENESS_PREFIX
from delivery.liveness import Liveness, liveness_purge
from delivery.models import (
    ACTIVE_STATES,
    WAITING_STATES,
    Attempt,
    AttemptOutcome,
    Lane,
    Message,
    MessageState,
    WorkerLease,
)
from delivery.providers.registry import provider_for
from delivery.transition_sql import (
    compiled_statement,
    instances_by_pks,
    query_sql,
    statement_rows,
)
from delivery.transitions import Change, message_transition
from events.models import Event, EventStatus, OutboxState
from templates.models import Template

log = logging.getLogger(__name__)


class _RowBefore(Func):
    """(a, b, c) < (x, y, z): a row-value comparison, which PostgreSQL and SQLite both
    evaluate and PostgreSQL plans far faster than the equivalent chain of ORs."""

    output_field = BooleanField()
    conditional = True

    def as_sql(
        self,
        compiler: Any,
        connection: Any,
        function: str | None = None,
        template: str | None = None,
        arg_joiner: str | None = None,
        **extra_context: Any,
    ) -> tuple[str, tuple[Any, ...]]:
        parts: list[str] = []
        params: list[Any] = []
        for expression in self.get_source_expressions():
            sql, sql_params = compiler.compile(expression)
            parts.append(sql)
            params.extend(sql_params)
        half = len(parts) // 2
        return f"({', '.join(parts[:half])}) < ({', '.join(parts[half:])})", tuple(params)


def _heads(states: tuple[str, ...], cutoff: datetime | None) -> QuerySet[Message]:
    """Due messages in `states` at the head of a free lane (see the module docstring);
    `cutoff` is `_gap_cutoff()`."""
    earlier = Message.objects.filter(
        _RowBefore(
            F("lane_order"),
            F("event_id"),
            F("id"),
            OuterRef("lane_order"),
            OuterRef("event_id"),
            OuterRef("id"),
        ),
        lane_id=OuterRef("lane_id"),
        state__in=ACTIVE_STATES,
    )
    in_order = Q(sequence__isnull=True) | Q(sequence__lte=F("lane__done_sequence") + 1)
    lane_free = Q(lane__busy_until__isnull=True) | Q(lane__busy_until__lt=Now())
    gap_over = Q(gap_until__lte=Now())
    if cutoff is not None:
        gap_over &= Q(received_at__lt=cutoff)
    return (
        Message.objects.filter(lane_free, state__in=states, next_attempt_at__lte=Now())
        .filter(in_order | gap_over)
        .filter(~Exists(earlier))
        .annotate(gap=Case(When(in_order, then=Value(False)), default=Value(True)))
    )


def _gap_cutoff() -> datetime | None:
    """A predecessor received within a message's gap wait may still be in the outbox (a
    backlog, an expansion transaction not yet committed): the wait is over only for messages
    received before this (None: the outbox is empty, every event has entered its lane)."""
    watermark = _outbox_watermark()
    if watermark is None:
        return None
    return watermark - timedelta(seconds=settings.ORDERING_GAP_WAIT)


def _outbox_watermark() -> datetime | None:
    """When the oldest event still waiting in the outbox was received (None: it is empty).
    Events held outside the outbox (auth_pending) do not count. Read before every head
    statement, so prepared on PostgreSQL (see compiled_statement)."""
    oldest = (
        Event.objects.filter(outbox_state=OutboxState.PENDING)
        .order_by("id")
        .values_list("received_at", flat=True)
    )
    if not is_postgres():
        return oldest.first()
    rows = statement_rows(*compiled_statement("watermark", lambda: oldest[:1]))
    return rows[0][0] if rows else None


@dataclass(frozen=True)
class Work:
    """What a pass of the outbox consumer or the ticker has to do, read in one statement
    (work_probe): each step of a pass costs a few statements even when it finds nothing,
    and an idle ticker makes four passes a second."""

    outbox: bool  # an accepted event waits in the outbox
    due: frozenset[str]  # the channels with a waiting message whose attempt has come
    expiring: bool  # a waiting message is past its expires_at
    recoverable: bool  # a claim whose lease or liveness ran out, or a liveness record did


def work_probe() -> Work:
    """One round trip of index look-ups (the outbox's, message_due per channel,
    message_expiring, message_leased). Each answer is a superset of what its step selects
    (`due` counts held messages during a pause, and heads behind a busy lane or a gap), so
    a step skipped on a False had nothing to take; what becomes due after the probe is found
    by the next pass, as it would be had it become due just after the step itself."""
    channels = tuple(settings.DELIVERY_PROVIDERS)
    (row,) = statement_rows(
        *compiled_statement(("probe", channels), lambda: _probe_statement(channels))
    )
    outbox, expiring, recoverable, *due = (bool(value) for value in row)
    return Work(
        outbox=outbox,
        due=frozenset(c for c, found in zip(channels, due, strict=True) if found),
        expiring=expiring,
        recoverable=recoverable,
    )


def _probe_statement(channels: tuple[str, ...]) -> tuple[str, tuple[Any, ...]]:
    waiting = Message.objects.filter(state__in=WAITING_STATES)
    parts = [
        Event.objects.filter(outbox_state=OutboxState.PENDING, status=EventStatus.ACCEPTED),
        waiting.filter(expires_at__lte=Now()),
        Message.objects.filter(_lost_claim(), state=MessageState.DISPATCHING),
        WorkerLease.objects.filter(name__startswith=LIVENESS_PREFIX, until__lt=Now()),
        *(waiting.filter(channel=channel, next_attempt_at__lte=Now()) for channel in channels),
    ]
    compiled = [query_sql(q.order_by().values("pk")) for q in parts]
    exists = [f"EXISTS ({sql})" for sql, _ in compiled]
    exists[2:4] = [f"{exists[2]} OR {exists[3]}"]
    return f"SELECT {', '.join(exists)}", tuple(p for _, params in compiled for p in params)


def claimable_states(*, paused: bool) -> tuple[str, ...]:
    # While paused, heads are still claimed so they can be recorded `held`; held ones stay.
    if paused:
        return (MessageState.PENDING, MessageState.RETRYING)
    return WAITING_STATES


def has_due(*, channel: str, paused: bool) -> bool:
    return _heads(claimable_states(paused=paused), _gap_cutoff()).filter(channel=channel).exists()


def lock_heads(
    *, channel: str, states: tuple[str, ...], limit: int, lock_messages: bool = False
) -> dict[int, Message]:
    """Up to `limit` claimable heads of `channel` in due order (id, lane_id and the `gap`
    annotation only), with their lanes locked until the caller's transaction ends.

    FOR UPDATE OF the lane, SKIP LOCKED: a lane another worker is claiming (or dry-running)
    is skipped; one it claimed and committed meanwhile fails the re-check of `busy_until`
    that PostgreSQL runs on the row it locks (its newest version). Either way this worker
    never takes a second message of a busy lane.

    A dry-run batch sets no `busy_until` for that re-check to see, so it locks the messages
    too (`lock_messages`): then the re-check reads the message's own newest state, and a
    head that another worker dry-ran and committed after this statement's snapshot has left
    the waiting states and drops out, instead of being hydrated and decided for nothing."""
    if connection.features.has_select_for_update and connection.get_autocommit():
        # The check Django makes when it compiles the statement, which a cached one skips.
        raise TransactionManagementError(
            "select_for_update cannot be used outside of a transaction."
        )
    cutoff = _gap_cutoff()
    key = (connection.vendor, channel, states, limit, lock_messages, cutoff is None)
    statement = _head_statements.get(key)
    if statement is None:
        statement = _head_statements[key] = _head_statement(
            channel=channel,
            states=states,
            limit=limit,
            lock_messages=lock_messages,
            with_cutoff=cutoff is not None,
        )
    params = list(statement.params)
    if cutoff is not None:
        assert statement.cutoff_at is not None
        params[statement.cutoff_at] = _RECEIVED_AT.get_db_prep_value(cutoff, connection)
    heads: dict[int, Message] = {}
    with connection.cursor() as cursor:
        cursor.execute(statement.sql, params)
        for row in cursor.fetchall():
            head = Message.from_db(connection.alias, _HEAD_FIELDS, row[: len(_HEAD_FIELDS)])
            head.gap = bool(row[statement.gap_at])  # type: ignore[attr-defined]
            heads[head.pk] = head
    return heads


# What lock_heads loads of a head (in this order: the order of the model's fields).
_HEAD_FIELDS = ("id", "lane_id")
_RECEIVED_AT = Message._meta.get_field("received_at")
# Stands for the gap-wait cutoff while a head statement is compiled; never compared with data.
_CUTOFF_PLACEHOLDER = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class _HeadStatement:
    sql: str
    params: tuple[Any, ...]
    cutoff_at: int | None  # the position of the gap-wait cutoff among the parameters
    gap_at: int  # the column of the `gap` annotation


# The compiled head statements of this process. Building and compiling the queryset (a
# correlated NOT EXISTS, a CASE, a row comparison) cost more CPU than running it, every
# batch; its text depends only on the key, and the cutoff is its one varying parameter.
# Bounded: the dispatcher's limits never exceed DISPATCH_BATCH_SIZE (the LIMIT is in the text).
_head_statements: dict[tuple[Any, ...], _HeadStatement] = {}


def _head_statement(
    *, channel: str, states: tuple[str, ...], limit: int, lock_messages: bool, with_cutoff: bool
) -> _HeadStatement:
    of = ("self", "lane") if lock_messages else ("lane",)
    cutoff = _CUTOFF_PLACEHOLDER if with_cutoff else None
    query = (
        _heads(states, cutoff)
        .filter(channel=channel)
        .select_related("lane")
        .select_for_update(skip_locked=True, of=of)
        .only(*_HEAD_FIELDS, "lane__id")
        .order_by("next_attempt_at", "id")[:limit]
    ).query
    compiler = query.get_compiler(connection=connection)
    sql, params = compiler.as_sql()
    assert compiler.klass_info is not None
    assert compiler.klass_info["select_fields"][: len(_HEAD_FIELDS)] == [0, 1]
    cutoff_at = None
    if cutoff is not None:
        placeholder = _RECEIVED_AT.get_db_prep_value(cutoff, connection)
        (cutoff_at,) = (i for i, p in enumerate(params) if p == placeholder)
    return _HeadStatement(
        sql=sql,
        params=tuple(params),
        cutoff_at=cutoff_at,
        gap_at=compiler.annotation_col_map["gap"],
    )


def claim(
    *, channel: str, limit: int, paused: bool, liveness: Liveness | None = None
) -> list[Message]:
    """Claim up to `limit` due heads of `channel` (at most one per lane) for this worker.
    With a `liveness`, the claims name its record and are recovered as soon as it runs out;
    without, only when their lease does."""
    states = claimable_states(paused=paused)
    lease = timedelta(seconds=settings.DISPATCH_LEASE_SECONDS)
    with transaction.atomic():
        found = lock_heads(channel=channel, states=states, limit=limit)
        if not found:
            return []
        if liveness is not None:
            liveness.ensure()
        # Always written: a name left by an earlier claim must not make this one recoverable.
        worker = {"claimed_by": liveness.name if liveness is not None else ""}
        lanes = {m.lane_id for m in found.values()}
        Lane.objects.filter(pk__in=lanes).update(busy_until=Now() + lease)
        messages = hydrate(list(found))
        claimed = message_transition(
            changes=[
                # `gap` is the annotation of _heads, unknown to the model's type.
                Change(message=m, values=worker, data=gap_note(m) if found[m.pk].gap else {})  # type: ignore[attr-defined]
                for m in messages
            ],
            state=MessageState.DISPATCHING,
            reason="claimed",
            durable=False,
        )
        unclaimed = lanes - {m.lane_id for m in claimed}
        if unclaimed:
            # Their head changed state meanwhile (expired, requeued): free the lane again.
            Lane.objects.filter(pk__in=unclaimed).update(busy_until=None)
    return claimed


# What a batch reads of a message's event (gates, hooks, rendering context, lineage rows).
# The rest (the recipient object, the token, timestamps, intake bookkeeping) is deferred: a
# row with fewer columns costs less to decode and build. A field read anyway costs one query
# per message, which tests/delivery/test_query_counts.py would see.
_EVENT_FIELDS = frozenset(
    {"id", "uid", "caller", "event_type", "recipient_id", "request_id", "data"}
)
_EVENT_DEFERRED = tuple(
    f"event__{f.name}" for f in Event._meta.concrete_fields if f.name not in _EVENT_FIELDS
)


def hydrate(ids: list[int]) -> list[Message]:
    """The claimed rows with what sending needs: of the event only the fields a batch reads
    (_EVENT_FIELDS), and each template once per batch, with its current version."""
    if not ids:  # an idle pass: building the two queries would cost more than the heads
        return []
    messages: list[Message] = instances_by_pks("hydrate messages", _hydrate_query, ids)
    wanted = {m.template_id for m in messages if m.template_id is not None}
    templates: dict[int, Template] = {
        t.pk: t for t in instances_by_pks("hydrate templates", _templates_query, list(wanted))
    }
    for message in messages:
        if message.template_id is not None:
            message.template = templates[message.template_id]
    return messages


def _hydrate_query() -> QuerySet[Message]:
    return (
        Message.objects.select_related("event")
        .defer(*_EVENT_DEFERRED)
        .order_by("next_attempt_at", "id")
    )


def _templates_query() -> QuerySet[Template]:
    # Fresh at every batch: enabled, whitelisted, tier and category are what the gates read.
    return Template.objects.select_related("current_version")


def _lost_claim() -> Q:
    """A claim whose lease ran out, or whose worker's liveness record did (or is gone)."""
    alive = WorkerLease.objects.filter(name=OuterRef("claimed_by"), until__gte=Now())
    return Q(lease_until__lt=Now()) | Q(~Q(claimed_by="") & ~Exists(alive))


def gap_note(message: Message) -> dict[str, Any]:
    return {
        "ordering_gap": {
            "missing_sequence": (message.sequence or 1) - 1,
            "waited_seconds": settings.ORDERING_GAP_WAIT,
        }
    }


def messages_recover_expired_leases(*, limit: int = 500) -> int:
    """Messages whose worker's lease ran out, or whose worker's liveness record did (killed,
    hung, paused, lost its database: delivery/liveness.py), go back to `retrying`, due now,
    with an `abandoned` attempt: the send may or may not have happened. Such a message counts
    the lost attempt; at the attempt limit it is dead. The move is fenced on the lease token
    read here, so a worker that writes its result meanwhile wins and nothing is recovered."""
    liveness_purge()
    stale = list(
        Message.objects.filter(_lost_claim(), state=MessageState.DISPATCHING)
        .select_related("event")
        .order_by("lease_until")[:limit]
    )
    changes: dict[str, list[Change]] = {MessageState.RETRYING: [], MessageState.DEAD: []}
    for message in stale:
        assert message.lease_until is not None  # every claim takes a lease
        number = message.attempts + 1
        attempt = Attempt(
            message=message,
            number=number,
            lease_token=message.lease_token,
            # When the claim began, as near as the row tells (the lease it took).
            started_at=message.lease_until - timedelta(seconds=settings.DISPATCH_LEASE_SECONDS),
            outcome=AttemptOutcome.ABANDONED,
            provider=provider_for(message.channel).name,
            error="worker lost its lease or liveness before it recorded a result",
            idempotency_key=str(message.uid),
        )
        dead = number >= settings.RETRY_MAX_ATTEMPTS
        changes[MessageState.DEAD if dead else MessageState.RETRYING].append(
            Change(
                message=message,
                values={
                    "attempts": number,
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
                reason="lease expired",
            )
        )
    if moved:
        log.warning("recovered messages whose worker lost its lease", extra={"count": moved})
    return moved
