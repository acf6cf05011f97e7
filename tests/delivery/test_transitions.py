"""The message state machine's table: the diagram in docs/architecture.md is the table, the
effects follow the rules the dispatcher relies on, and no move leaves the table."""

from __future__ import annotations

import re

from audit.models import AuditRecord
from delivery.models import ACTIVE_STATES, FINAL_STATES, WAITING_STATES, Message, MessageState
from delivery.outbox import outbox_consume
from delivery.transitions import (
    TRANSITIONS,
    Change,
    Effect,
    message_transition,
    transitions_markdown,
)
from tests.delivery.conftest import ROOT

DOC = ROOT / "docs" / "architecture.md"


def test_it_matches_the_table_in_architecture_md():
    text = DOC.read_text(encoding="utf-8")
    found = re.search(r"<!-- transitions:begin -->\n(.*?)<!-- transitions:end -->", text, re.S)
    assert found is not None, "docs/architecture.md lost its transitions markers"
    assert found.group(1) == transitions_markdown()


def test_it_fences_and_frees_the_lane_on_every_edge_out_of_dispatching():
    leaving = [e for e in TRANSITIONS.values() if e.source == MessageState.DISPATCHING]
    assert leaving
    for edge in leaving:
        assert {Effect.FENCED, Effect.FREES_LANE} <= edge.effects, edge
    others = [e for e in TRANSITIONS.values() if e.source != MessageState.DISPATCHING]
    assert not [e for e in others if e.effects & {Effect.FENCED, Effect.FREES_LANE}]


def test_it_takes_the_lease_on_the_claim_only():
    claims = {e.source for e in TRANSITIONS.values() if e.target == MessageState.DISPATCHING}
    assert claims == set(WAITING_STATES)
    leased = [e for e in TRANSITIONS.values() if Effect.TAKES_LEASE in e.effects]
    assert {e.target for e in leased} == {MessageState.DISPATCHING}
    assert len(leased) == len(claims)


def test_it_raises_done_sequence_exactly_when_an_active_message_finishes():
    for edge in TRANSITIONS.values():
        finishes = edge.source in ACTIVE_STATES and edge.target in FINAL_STATES
        assert (Effect.RAISES_DONE in edge.effects) == finishes, edge


def test_it_leaves_a_final_state_only_by_requeue_or_a_provider_receipt():
    out_of_final = {(e.source, e.target) for e in TRANSITIONS.values() if e.source in FINAL_STATES}
    assert out_of_final == {
        (MessageState.DEAD, MessageState.PENDING),
        (MessageState.BLOCKED, MessageState.PENDING),
        (MessageState.SENT, MessageState.DELIVERED),
        (MessageState.SENT, MessageState.UNDELIVERED),
        (MessageState.DELIVERED, MessageState.UNDELIVERED),
    }


def test_it_never_turns_a_reported_failure_into_a_success():
    # Receipts may arrive out of order: a late "delivered" must not undo "undelivered".
    assert (MessageState.UNDELIVERED, MessageState.DELIVERED) not in TRANSITIONS
    assert not [e for e in TRANSITIONS.values() if e.source == MessageState.UNDELIVERED]


def test_it_reaches_every_state_from_pending():
    reached, frontier = {MessageState.PENDING.value}, [MessageState.PENDING.value]
    while frontier:
        state = frontier.pop()
        for source, target in TRANSITIONS:
            if source == state and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == {state.value for state in MessageState}


def test_it_moves_nothing_along_a_missing_edge(email_only, accept):
    event = accept()
    outbox_consume()
    Message.objects.filter(event=event).update(state=MessageState.SENT)
    message = Message.objects.select_related("event").get(event=event)
    lineage = AuditRecord.objects.filter(message_uid=message.uid).count()

    moved = message_transition(
        changes=[Change(message=message)], state=MessageState.PENDING, reason="not an edge"
    )

    assert moved == []
    assert Message.objects.get(pk=message.pk).state == MessageState.SENT
    assert AuditRecord.objects.filter(message_uid=message.uid).count() == lineage
