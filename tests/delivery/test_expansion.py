"""Turning outbox events into messages: one per enabled route with an address, never two."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from audit.models import AuditRecord
from delivery.models import Lane, Message, Route
from delivery.outbox import message_new, outbox_consume, outbox_expand
from events.models import Event, OutboxState
from events.services import event_accept
from templates.services import template_create
from tests.delivery.conftest import ALICE, make_payload, run_pump


def test_it_creates_one_message_per_enabled_route(routes, accept):
    event = accept(sequence=3, ordering_key="k-1")

    run_pump()

    messages = {m.channel: m for m in Message.objects.filter(event=event)}
    assert set(messages) == {"email", "sms"}
    assert messages["email"].to_address == "ada@example.org"
    assert messages["sms"].to_address == "+12025550123"
    assert messages["email"].template == routes["email"]
    assert messages["email"].template_version_id == routes["email"].current_version_id
    assert {m.sequence for m in messages.values()} == {3}
    assert {m.ordering_key for m in messages.values()} == {"k-1"}
    event.refresh_from_db()
    assert event.outbox_state == OutboxState.DONE


def test_it_skips_a_route_the_recipient_has_no_address_for_and_says_so(routes, accept):
    event = accept(recipient={"phone": None})

    run_pump()

    assert list(Message.objects.filter(event=event).values_list("channel", flat=True)) == ["email"]
    skipped = AuditRecord.objects.get(event_uid=event.uid, kind="delivery.route_skipped")
    assert skipped.data["channel"] == "sms"
    assert skipped.data["reason"] == "recipient has no phone"


def test_it_ignores_disabled_routes(email_only, accept):
    event = accept()

    run_pump()

    assert [m.channel for m in Message.objects.filter(event=event)] == ["email"]


def test_it_records_an_event_type_without_routes(routes, accept):
    event = accept(event_type="new_match")

    run_pump()

    assert not Message.objects.filter(event=event).exists()
    assert AuditRecord.objects.filter(event_uid=event.uid, kind="delivery.no_route").exists()
    event.refresh_from_db()
    assert event.outbox_state == OutboxState.DONE


def test_it_consumes_events_when_no_route_is_enabled_on_any_channel(db, accept):
    event = accept(sequence=1)

    assert outbox_expand() == 1

    assert not Lane.objects.exists()
    assert AuditRecord.objects.filter(event_uid=event.uid, kind="delivery.no_route").exists()
    event.refresh_from_db()
    assert event.outbox_state == OutboxState.DONE


def test_it_never_makes_a_second_message_for_a_duplicate_event(routes, accept):
    payload = make_payload()
    first = event_accept(caller=ALICE, payload=payload, idempotency_key="dup", request_id="r1")
    run_pump()
    again = event_accept(caller=ALICE, payload=payload, idempotency_key="dup", request_id="r2")
    run_pump()

    assert again.duplicate
    assert again.event.pk == first.event.pk
    assert Message.objects.filter(event=first.event).count() == 2
    assert Event.objects.count() == 1


def test_it_refuses_a_second_message_for_the_same_event_and_route(routes, accept):
    event = accept()
    run_pump()
    original = Message.objects.filter(event=event).first()

    original.pk = None
    original.uid = None
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(
            **{
                f.attname: getattr(original, f.attname)
                for f in Message._meta.concrete_fields
                if f.attname not in {"id", "uid", "created_at", "updated_at", "next_attempt_at"}
            }
        )


def test_it_picks_the_template_of_the_recipient_locale(routes, accept):
    french = template_create(
        key="deadline_soon_email",
        channel="email",
        locale="fr",
        subject="{{ scholarship }} ferme le {{ deadline }}",
        body="{{ scholarship }} ferme le {{ deadline }}.",
        whitelisted=True,
    )
    event = accept(recipient={"locale": "fr-CA"})

    run_pump()

    message = Message.objects.get(event=event, channel="email")
    assert message.template == french
    assert message.locale == "fr-CA"


def test_it_leaves_events_that_are_not_accepted_alone(routes, accept):
    event = accept()
    Event.objects.filter(pk=event.pk).update(status="auth_pending", outbox_state="held")

    run_pump()

    assert not Message.objects.filter(event=event).exists()


def test_it_writes_a_lineage_row_for_each_new_message(routes, accept, pending_expansion):
    event = accept()

    run_pump()

    created = AuditRecord.objects.filter(event_uid=event.uid, kind="message.pending")
    assert created.count() == 2
    assert {r.request_id for r in created} == {event.request_id}
    assert set(created.values_list("message_uid", flat=True)) == set(
        Message.objects.filter(event=event).values_list("uid", flat=True)
    )


def test_it_records_the_hand_off_in_the_message_rows_and_only_alone_without_a_message(
    routes, accept, pending_expansion
):
    routed = accept()
    unrouted = accept(event_type="new_match")

    outbox_consume()

    kinds = AuditRecord.objects.filter(event_uid=routed.uid).values_list("kind", flat=True)
    assert sorted(kinds) == ["event.received", "message.pending", "message.pending"]
    rows = AuditRecord.objects.filter(event_uid=routed.uid, kind="message.pending")
    assert {r.data["handed_off"] for r in rows} == {True}
    kinds = AuditRecord.objects.filter(event_uid=unrouted.uid).values_list("kind", flat=True)
    assert list(kinds) == ["event.received", "delivery.no_route", "outbox.handed_off"]
    assert Event.objects.filter(pk__in=[routed.pk, unrouted.pk], outbox_state="done").count() == 2


def test_it_puts_messages_in_the_lanes_of_their_key_and_channel_creating_only_new_ones(
    routes, accept
):
    first = accept(ordering_key="k-1")
    outbox_expand()
    lanes = {(lane.ordering_key, lane.channel): lane.pk for lane in Lane.objects.all()}
    done = Lane.objects.filter(ordering_key="k-1", channel="sms").update(done_sequence=4)
    again, other = accept(ordering_key="k-1"), accept(ordering_key="k-2")
    outbox_expand()

    assert set(lanes) == {("k-1", "email"), ("k-1", "sms")}
    assert done == 1
    placed = {
        (m.event_id, m.channel): (m.lane.ordering_key, m.lane.channel, m.lane.pk)
        for m in Message.objects.select_related("lane")
    }
    for event in (first, again):
        for channel in ("email", "sms"):
            assert placed[(event.pk, channel)] == ("k-1", channel, lanes[("k-1", channel)])
    assert {placed[(other.pk, c)][:2] for c in ("email", "sms")} == {
        ("k-2", "email"),
        ("k-2", "sms"),
    }
    assert Lane.objects.count() == 4
    # An existing lane is reused as it is, not reset.
    assert Lane.objects.get(ordering_key="k-1", channel="sms").done_sequence == 4
    assert Lane.objects.get(ordering_key="k-2", channel="sms").done_sequence == 0


def test_message_new_puts_each_value_in_its_field(routes, accept):
    # message_new passes values by position: a field added or moved in the model must not
    # shift them. Compared with the same message built by keywords.
    event = accept(sequence=4, ordering_key="k-9", expires_at="2030-01-01T00:00:00Z")
    route = Route.objects.get(channel="email")
    lane = Lane.objects.create(caller=event.caller, ordering_key="k-9", channel="email")
    template = routes["email"]
    gap_until = event.received_at

    built = message_new(
        event=event,
        route=route,
        lane=lane,
        template=template,
        locale="en",
        to_address="ada@example.org",
        gap_until=gap_until,
    )
    expected = Message(
        uid=built.uid,
        event=event,
        route=route,
        lane=lane,
        channel="email",
        template_key=route.template_key,
        template=template,
        template_version_id=template.current_version_id,
        recipient_id=event.recipient_id,
        locale="en",
        to_address="ada@example.org",
        ordering_key="k-9",
        sequence=4,
        lane_order=4,
        received_at=event.received_at,
        gap_until=gap_until,
        expires_at=event.expires_at,
    )

    for field in Message._meta.concrete_fields:
        got, want = getattr(built, field.attname), getattr(expected, field.attname)
        if field.has_db_default():
            assert type(got) is type(want), field.name
        else:
            assert got == want, field.name
    assert (built.event, built.route, built.lane, built.template) == (
        event,
        route,
        lane,
        template,
    )
