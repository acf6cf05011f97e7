"""What the replay verifies: the answers against the contract, and the database afterwards.

Runs in the benchmark process with Django set up against the benchmark's database. Every
database check is scoped to this run's service account (its events, their messages), so
earlier runs in the same database change nothing.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bench.workload import Request


@dataclass
class Answer:
    """What came back for one request: status (0 for a timeout or connection error), the
    event id from the body, and the ack latency in ms from the request's scheduled time."""

    status: int
    event_id: str
    latency_ms: float


@dataclass
class Verdict:
    accepted: int = 0
    errors: int = 0
    idempotency_violations: int = 0
    new_events: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)


def judge_answers(requests: list[Request], answers: list[Answer | None]) -> Verdict:
    """Per idempotency key: exactly one 202 (the winner, whichever request the database let
    in first); every other request with the winner's exact bytes a 200 carrying its id;
    every request with other bytes a 409. Anything else, a timeout or a 5xx is an error."""
    verdict = Verdict()
    groups: dict[str, list[tuple[Request, Answer]]] = defaultdict(list)
    for request, answer in zip(requests, answers, strict=True):
        answer = answer or Answer(0, "", 0.0)
        name = str(answer.status)
        verdict.by_status[name] = verdict.by_status.get(name, 0) + 1
        if answer.status in (200, 202, 409):
            groups[request.idempotency_key].append((request, answer))
        else:
            verdict.errors += 1
    unanswered = {
        request.idempotency_key
        for request, answer in zip(requests, answers, strict=True)
        if answer is None or answer.status == 0
    }
    for key, members in groups.items():
        winners = [(r, a) for r, a in members if a.status == 202]
        if not winners and key in unanswered:
            # The 202 may be the answer that never arrived (already counted as an error).
            continue
        if len(winners) != 1:
            verdict.idempotency_violations += len(winners) if winners else 1
            verdict.examples.append(f"{key}: {len(winners)} requests answered 202")
            continue
        verdict.new_events += 1
        winner_request, winner_answer = winners[0]
        winner_digest = hashlib.sha256(winner_request.body).digest()
        for request, answer in members:
            if answer is winner_answer:
                verdict.accepted += 1
                continue
            same = hashlib.sha256(request.body).digest() == winner_digest
            ok = (
                answer.status == 200 and answer.event_id == winner_answer.event_id
                if same
                else answer.status == 409
            )
            if ok:
                verdict.accepted += 1
            else:
                verdict.idempotency_violations += 1
                if len(verdict.examples) < 5:
                    verdict.examples.append(f"{key}: answered {answer.status}")
    return verdict


@dataclass
class PipelineState:
    events: int
    outbox_pending: int
    active_messages: int


def pipeline_state(caller: str) -> PipelineState:
    from delivery.models import ACTIVE_STATES, Message
    from events.models import Event, EventStatus, OutboxState

    events = Event.objects.filter(caller=caller, status=EventStatus.ACCEPTED)
    return PipelineState(
        events=events.count(),
        outbox_pending=events.filter(outbox_state=OutboxState.PENDING).count(),
        active_messages=Message.objects.filter(
            event__caller=caller, state__in=ACTIVE_STATES
        ).count(),
    )


def wait_for_drain(
    caller: str, *, timeout: float, progress: Callable[[PipelineState], None]
) -> tuple[bool, float]:
    """Poll until every event of the run is handed off and no message of it is still in
    flight; returns (drained, seconds waited)."""
    started = time.monotonic()
    while True:
        state = pipeline_state(caller)
        progress(state)
        if state.outbox_pending == 0 and state.active_messages == 0:
            return True, time.monotonic() - started
        if time.monotonic() - started > timeout:
            return False, time.monotonic() - started
        time.sleep(0.5)


def count_ordering_violations(
    rows: Iterable[tuple[str, str, int, datetime]], *, gap_wait: timedelta
) -> int:
    """Messages dispatched out of order. `rows` are (ordering_key, channel, sequence,
    received_at) grouped by lane (key and channel, SPEC §4: ordering holds per key and
    channel; a key's SMS may overtake its email) and in dispatch order within a lane. A
    message is a violation when a higher sequence of its lane went before it although it
    arrived within that one's gap wait (ORDERING_GAP_WAIT from its arrival); one arriving
    later than that may be overtaken, the gap recorded."""
    violations = 0
    previous_lane: tuple[str, str] | None = None
    dispatched: list[tuple[int, datetime]] = []  # (sequence, received_at) in dispatch order
    for ordering_key, channel, sequence, received_at in rows:
        if (ordering_key, channel) != previous_lane:
            previous_lane, dispatched = (ordering_key, channel), []
        violations += any(
            earlier_sequence > sequence and received_at <= earlier_received + gap_wait
            for earlier_sequence, earlier_received in dispatched
        )
        dispatched.append((sequence, received_at))
    return violations


def database_checks(caller: str) -> dict[str, Any]:
    """lost, duplicate_sends and ordering_violations, read from the database."""
    from django.conf import settings
    from django.db.models import Count, Q

    from audit.models import AuditRecord
    from delivery.models import Attempt, AttemptOutcome, Message, MessageState, Route
    from events.models import Event, EventStatus, OutboxState

    events = Event.objects.filter(caller=caller, status=EventStatus.ACCEPTED)
    routes = dict(
        Route.objects.filter(enabled=True)
        .values("event_type")
        .annotate(n=Count("id"))
        .values_list("event_type", "n")
    )
    # Lost: an accepted event never handed off, or with fewer messages than its routes
    # (every replayed recipient has both an email address and a phone number).
    per_event = events.annotate(n=Count("messages")).values_list("event_type", "n", "outbox_state")
    lost = sum(
        1
        for event_type, count, outbox_state in per_event
        if outbox_state != OutboxState.DONE or count < routes.get(event_type, 0)
    )
    messages = Message.objects.filter(event__caller=caller)
    done_states = (MessageState.SENT, MessageState.DRY_RUN)

    # Duplicate sends, three ways: two messages for one event and route (the unique index
    # forbids it), a message with two successful provider attempts, a message that entered
    # sent/dry_run twice according to its lineage.
    twin_messages = (
        messages.values("event_id", "route_id").annotate(n=Count("id")).filter(n__gt=1).count()
    )
    twin_attempts = (
        Attempt.objects.filter(message__event__caller=caller, outcome=AttemptOutcome.SENT)
        .values("message_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    uids = messages.values("uid")
    twin_lineage = (
        AuditRecord.objects.filter(
            Q(kind="message.sent") | Q(kind="message.dry_run"), message_uid__in=uids
        )
        .values("message_uid")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )

    rows = (
        messages.filter(state__in=done_states, dispatched_at__isnull=False)
        .exclude(sequence=None)
        .order_by("ordering_key", "channel", "dispatched_at", "id")
        .values_list("ordering_key", "channel", "sequence", "received_at")
    )
    ordering_violations = count_ordering_violations(
        rows, gap_wait=timedelta(seconds=settings.ORDERING_GAP_WAIT)
    )

    states = dict(
        messages.values("state").annotate(n=Count("id")).order_by().values_list("state", "n")
    )
    return {
        "events_in_db": events.count(),
        "messages": sum(states.values()),
        "message_states": states,
        "lost": lost,
        "duplicate_sends": twin_messages + twin_attempts + twin_lineage,
        "ordering_violations": ordering_violations,
    }
