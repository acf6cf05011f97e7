"""Dry run (DISABLE_SEND on, the default): a message goes from its waiting state straight to
its outcome, with one lineage row, no claim and no lease, under the same gates, ordering and
gap waits as a send."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from audit.models import AuditRecord
from delivery import batch, dispatcher, outbox
from delivery.dispatcher import dispatch_batch
from delivery.models import Lane, Message, MessageState, Route
from delivery.outbox import outbox_consume
from delivery.suppressions import suppression_add
from templates.models import Category, Template, Tier
from templates.services import template_create
from tests.delivery.conftest import run_pump, set_flag
from tests.delivery.conftest import states as states_of


def _lineage(message: Message) -> list[tuple[str, str | None, str]]:
    rows = AuditRecord.objects.filter(message_uid=message.uid).order_by("id")
    return [(r.kind, r.data.get("from"), r.data["to"]) for r in rows]


def test_it_decides_a_message_at_expansion_with_one_lineage_row(routes, accept):
    event = accept(sequence=1, ordering_key="k")

    outbox_consume()

    for message in Message.objects.filter(event=event):
        assert _lineage(message) == [("message.dry_run", "created", "dry_run")]
        assert message.state == MessageState.DRY_RUN
        assert message.rendered_hash
        assert message.dispatched_at is not None
        assert message.provider
        assert message.template_version_id == message.template.current_version_id
        row = AuditRecord.objects.get(message_uid=message.uid)
        # Everything the pending row said, the hand-off, and the outcome.
        assert row.data == {
            "from": "created",
            "to": "dry_run",
            "reason": "DISABLE_SEND is on: rendered, not sent",
            "route": message.route_id,
            "channel": message.channel,
            "template": message.template_key,
            "template_version": message.template_version_id,
            "sequence": 1,
            "handed_off": True,
        }
    assert list(AuditRecord.objects.filter(event_uid=event.uid).values_list("kind", flat=True)) == [
        "event.received",
        "message.dry_run",
        "message.dry_run",
    ]
    lanes = Lane.objects.filter(ordering_key="k")
    assert {(lane.channel, lane.done_sequence, lane.busy_until) for lane in lanes} == {
        ("email", 1, None),
        ("sms", 1, None),
    }


def test_it_writes_one_lineage_row_per_dry_run_message(routes, accept, pending_expansion):
    event = accept(sequence=1, ordering_key="k")

    run_pump()

    for message in Message.objects.filter(event=event):
        assert _lineage(message) == [
            ("message.pending", None, "pending"),
            ("message.dry_run", "pending", "dry_run"),
        ]
        assert message.state == MessageState.DRY_RUN
        assert message.rendered_hash
        assert message.dispatched_at is not None
        assert message.template_version_id == message.template.current_version_id
        assert (message.lease_token, message.lease_until) == (0, None)  # never claimed
        row = AuditRecord.objects.get(message_uid=message.uid, kind="message.dry_run")
        assert row.data["reason"] == "DISABLE_SEND is on: rendered, not sent"
        assert (row.request_id, row.event_uid) == (event.request_id, event.uid)
    lanes = Lane.objects.filter(ordering_key="k")  # one per channel
    assert {(lane.channel, lane.done_sequence, lane.busy_until) for lane in lanes} == {
        ("email", 1, None),
        ("sms", 1, None),
    }


def test_it_dry_runs_sequences_posted_in_reverse_in_sequence_order(email_only, accept):
    for n in (5, 4, 3, 2, 1):
        accept(sequence=n, ordering_key="k")

    run_pump()

    rows = AuditRecord.objects.filter(kind="message.dry_run").order_by("id")
    by_uid = dict(Message.objects.values_list("uid", "sequence"))
    assert [by_uid[r.message_uid] for r in rows] == [1, 2, 3, 4, 5]
    dispatched = list(Message.objects.order_by("sequence").values_list("dispatched_at", flat=True))
    assert dispatched == sorted(dispatched)
    assert Lane.objects.get(ordering_key="k").done_sequence == 5


def test_it_waits_for_a_missing_predecessor_then_records_the_gap(email_only, accept, settings):
    settings.ORDERING_GAP_WAIT = 10
    first = accept(sequence=1, ordering_key="k")
    third = accept(sequence=3, ordering_key="k")

    run_pump()

    assert Message.objects.get(event=first).state == MessageState.DRY_RUN
    waiting = Message.objects.get(event=third)
    assert waiting.state == MessageState.PENDING

    Message.objects.filter(pk=waiting.pk).update(gap_until=timezone.now() - timedelta(seconds=1))
    run_pump()

    assert _lineage(waiting) == [
        ("message.pending", None, "pending"),
        ("message.dry_run", "pending", "dry_run"),
    ]
    row = AuditRecord.objects.get(message_uid=waiting.uid, kind="message.dry_run")
    assert row.data["ordering_gap"] == {"missing_sequence": 2, "waited_seconds": 10}
    first_row = AuditRecord.objects.get(
        message_uid=Message.objects.get(event=first).uid, kind="message.dry_run"
    )
    assert "ordering_gap" not in first_row.data
    assert Lane.objects.get(ordering_key="k").done_sequence == 3


def _expired(accept: Callable[..., Any], templates: dict[str, Template]) -> Any:
    return accept(expires_at=(timezone.now() - timedelta(seconds=1)).isoformat())


def _suppressed(accept: Callable[..., Any], templates: dict[str, Template]) -> Any:
    suppression_add(channel="email", address="ada@example.org", reason="opt_out", actor="ops")
    return accept()


def _template_change(**fields: Any) -> Callable[..., Any]:
    def setup(accept: Callable[..., Any], templates: dict[str, Template]) -> Any:
        Template.objects.filter(pk=templates["email"].pk).update(**fields)
        return accept()

    return setup


def _no_template(accept: Callable[..., Any], templates: dict[str, Template]) -> Any:
    Route.objects.filter(channel="email").update(template_key="no-such-template")
    return accept()


def _wrong_channel(accept: Callable[..., Any], templates: dict[str, Template]) -> Any:
    Route.objects.filter(channel="email").update(template_key="deadline_soon_sms")
    return accept()


def _unrenderable(accept: Callable[..., Any], templates: dict[str, Template]) -> Any:
    template_create(
        key="broken", channel="email", subject="Hi", body="{{ no_such_field }}", whitelisted=True
    )
    Route.objects.filter(channel="email").update(template_key="broken")
    return accept()


@pytest.mark.parametrize(
    ("setup", "state", "last_error"),
    [
        (_expired, "expired", ""),
        (_suppressed, "suppressed", ""),
        (_template_change(enabled=False), "blocked", "template disabled"),
        (_template_change(whitelisted=False), "blocked", "template not whitelisted"),
        (_template_change(category=Category.PROMOTIONAL), "blocked", "PROMO_SENDS is off"),
        (
            _template_change(tier=Tier.SAFE_INTAKE),
            "blocked",
            "tier 1 needs AUTOMATION_ENABLED, not SAFE_MODE",
        ),
        (_no_template, "dead", "no template 'no-such-template'"),
        (_wrong_channel, "dead", "template is for sms, the route for email"),
        (_unrenderable, "dead", "render failed: missing variable 'no_such_field'"),
    ],
    ids=[
        "expired",
        "suppressed",
        "disabled",
        "not-whitelisted",
        "promotional",
        "tier",
        "no-template",
        "wrong-channel",
        "render-error",
    ],
)
@pytest.mark.parametrize("at_expansion", [True, False], ids=["at-expansion", "in-a-batch"])
def test_it_applies_every_gate_in_dry_run(
    routes, email_only, accept, setup, state, last_error, at_expansion, monkeypatch
):
    if not at_expansion:
        monkeypatch.setattr(outbox, "dry_run_now", lambda: False)
    event = setup(accept, routes)

    run_pump()

    email = Message.objects.get(event=event, channel="email")
    assert (email.state, email.last_error) == (state, last_error)
    assert email.rendered_hash == ""
    first = [] if at_expansion else [("message.pending", None, "pending")]
    assert _lineage(email) == [
        *first,
        (f"message.{state}", "created" if at_expansion else "pending", state),
    ]


def test_a_held_message_is_dry_run_from_held_once_the_pause_is_lifted(email_only, accept):
    set_flag("DISPATCH_PAUSED", True)
    event = accept()
    run_pump()
    assert Message.objects.get(event=event).state == MessageState.HELD

    set_flag("DISPATCH_PAUSED", False)
    run_pump()

    assert _lineage(Message.objects.get(event=event)) == [
        ("message.pending", None, "pending"),
        ("message.dispatching", "pending", "dispatching"),
        ("message.held", "dispatching", "held"),
        ("message.dry_run", "held", "dry_run"),
    ]


def test_the_batch_after_sends_are_turned_on_is_claimed_and_sent(
    email_only, accept, smtp_server, pending_expansion
):
    first = accept(sequence=1, ordering_key="k")
    second = accept(sequence=2, ordering_key="k")
    outbox_consume()
    assert dispatch_batch(channel="email").states == {MessageState.DRY_RUN: 1}

    set_flag("DISABLE_SEND", False)
    set_flag("RATE_LIMIT_ENABLED", False)
    run_pump()

    assert Message.objects.get(event=first).state == MessageState.DRY_RUN
    sent = Message.objects.get(event=second)
    assert _lineage(sent) == [
        ("message.pending", None, "pending"),
        ("message.dispatching", "pending", "dispatching"),
        ("message.sent", "dispatching", "sent"),
    ]
    assert [m.message["Subject"].split(":")[0] for m in smtp_server.messages] == ["Seq 2"]


def test_it_leaves_a_message_in_line_when_sends_are_turned_on_mid_batch(
    email_only, accept, smtp_server, monkeypatch, pending_expansion
):
    set_flag("RATE_LIMIT_ENABLED", False)
    event = accept()
    outbox_consume()
    reads: list[str] = []
    real_flag_is_on = dispatcher.flag_is_on

    def sends_turn_on_after_the_batch_was_selected(name: str) -> bool:
        if name == "DISABLE_SEND":
            reads.append(name)
            return len(reads) == 1
        return real_flag_is_on(name)

    # The loop reads the flag to pick the batch's kind, the batch again to decide each message.
    monkeypatch.setattr(dispatcher, "flag_is_on", sends_turn_on_after_the_batch_was_selected)
    monkeypatch.setattr(batch, "flag_is_on", sends_turn_on_after_the_batch_was_selected)
    dispatch_batch(channel="email")

    message = Message.objects.get(event=event)
    assert len(reads) == 2  # the batch was a dry-run one, and read the flag again to decide
    assert (message.state, message.lease_token) == (MessageState.PENDING, 0)
    assert _lineage(message) == [("message.pending", None, "pending")]
    assert Lane.objects.get(pk=message.lane_id).busy_until is None

    dispatch_batch(channel="email")

    message.refresh_from_db()
    assert message.state == MessageState.SENT
    assert len(smtp_server.messages) == 1


def _kinds(events: list[Any]) -> dict[int | None, str]:
    return {m.sequence: m.state for m in Message.objects.filter(event__in=events)}


def test_it_decides_consecutive_sequences_of_one_expansion_in_order(email_only, accept):
    events = [accept(sequence=n, ordering_key="k") for n in (1, 2, 3)]

    outbox_consume()

    assert _kinds(events) == {1: "dry_run", 2: "dry_run", 3: "dry_run"}
    assert Lane.objects.get(ordering_key="k").done_sequence == 3
    assert not AuditRecord.objects.filter(kind="message.pending").exists()


def test_it_leaves_a_message_out_of_order_and_those_behind_it_pending(email_only, accept):
    early = [accept(sequence=n, ordering_key="k") for n in (1, 3, 4)]
    other = accept(ordering_key="other")

    outbox_consume()

    # 3 waits for 2, and 4 for 3 (its lane holds an active message): as a claim would.
    assert _kinds(early) == {1: "dry_run", 3: "pending", 4: "pending"}
    assert Message.objects.get(event=other).state == MessageState.DRY_RUN
    late = accept(sequence=2, ordering_key="k")
    outbox_consume()
    assert Message.objects.get(event=late).state == MessageState.PENDING

    run_pump()

    assert _kinds([*early, late]) == {1: "dry_run", 2: "dry_run", 3: "dry_run", 4: "dry_run"}
    by_batch = AuditRecord.objects.filter(kind="message.dry_run", data__from="pending")
    assert set(by_batch.values_list("message_uid", flat=True)) == set(
        Message.objects.filter(sequence__in=(2, 3, 4)).values_list("uid", flat=True)
    )


def test_it_counts_a_sequence_settled_earlier_in_the_expansion(routes, accept):
    first = accept(sequence=1, ordering_key="k", recipient={"email": ""})  # SMS only
    second = accept(sequence=2, ordering_key="k")

    outbox_consume()

    assert states_of(first) == {"sms": "dry_run"}
    assert states_of(second) == {"email": "dry_run", "sms": "dry_run"}


def test_it_leaves_a_message_of_a_busy_lane_pending(email_only, accept):
    accept(ordering_key="k")
    outbox_consume()
    Lane.objects.filter(ordering_key="k").update(busy_until=timezone.now() + timedelta(minutes=1))
    event = accept(ordering_key="k")

    outbox_consume()

    assert Message.objects.get(event=event).state == MessageState.PENDING


def test_it_leaves_messages_pending_while_dispatch_is_paused(email_only, accept):
    set_flag("DISPATCH_PAUSED", True)
    event = accept()

    outbox_consume()

    assert Message.objects.get(event=event).state == MessageState.PENDING


def test_it_inserts_a_message_pending_when_sends_are_turned_on_during_expansion(
    email_only, accept, monkeypatch
):
    real_flag_is_on = batch.flag_is_on
    # The expansion saw dry run; by the time the batch decides the message, sends are on.
    monkeypatch.setattr(
        batch, "flag_is_on", lambda name: name != "DISABLE_SEND" and real_flag_is_on(name)
    )
    event = accept()

    outbox_consume()

    message = Message.objects.get(event=event)
    assert (message.state, message.rendered_hash) == (MessageState.PENDING, "")
    assert _lineage(message) == [("message.pending", None, "pending")]
