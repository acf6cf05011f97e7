"""The gates read right before each send, and the state each one leads to."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from audit.models import AuditRecord
from delivery.gates import messages_expire_due
from delivery.models import Attempt, Message, MessageState, Route, Suppression
from delivery.outbox import outbox_consume
from delivery.suppressions import suppression_add, suppression_remove
from templates.models import Category, Template, Tier
from templates.services import template_create
from tests.delivery.conftest import run_pump, set_flag, states


def test_it_records_dry_run_by_default_and_sends_nothing(routes, accept, smtp_server, sms_gateway):
    event = accept()

    run_pump()

    assert states(event) == {"email": "dry_run", "sms": "dry_run"}
    for message in Message.objects.filter(event=event):
        assert message.rendered_hash
        assert message.dispatched_at is not None
        assert message.template_version_id == message.template.current_version_id
    assert smtp_server.messages == []
    assert sms_gateway.sends == []
    assert not Attempt.objects.exists()


def test_it_never_sends_a_dry_run_message_later(routes, accept, smtp_server, sms_gateway):
    event = accept()
    run_pump()

    set_flag("DISABLE_SEND", False)
    set_flag("RATE_LIMIT_ENABLED", False)
    run_pump()

    assert states(event) == {"email": "dry_run", "sms": "dry_run"}
    assert smtp_server.messages == []
    assert sms_gateway.sends == []


def test_it_sends_when_sends_are_on(routes, accept, live, smtp_server, sms_gateway):
    event = accept()

    run_pump()

    assert states(event) == {"email": "sent", "sms": "sent"}
    email = Message.objects.get(event=event, channel="email")
    assert email.provider == "email"
    assert email.attempts == 1
    assert email.dispatched_at is not None
    assert email.provider_message_id == smtp_server.messages[0].message["Message-ID"]
    assert smtp_server.messages[0].message["Subject"] == "Seq 0: STEM Futures closes on 2026-12-01"
    assert sms_gateway.sends[0].form["Body"] == "Seq 0: STEM Futures closes 2026-12-01."
    attempt = Attempt.objects.get(message=email)
    assert (attempt.outcome, attempt.response_code, attempt.stale) == ("sent", "250", False)
    assert attempt.idempotency_key == str(email.uid)


def test_it_expires_a_message_past_its_expiry(routes, accept, live, smtp_server, sms_gateway):
    event = accept(expires_at=(timezone.now() - timedelta(seconds=1)).isoformat())

    run_pump()

    assert states(event) == {"email": "expired", "sms": "expired"}
    assert smtp_server.messages == []


def test_it_expires_a_waiting_message_without_waiting_for_its_turn(
    routes, accept, pending_expansion
):
    first = accept(sequence=1, ordering_key="k")
    second = accept(
        sequence=2, ordering_key="k", expires_at=(timezone.now() + timedelta(hours=1)).isoformat()
    )
    Message.objects.filter(event=first).update(state=MessageState.RETRYING)
    outbox_consume()
    Message.objects.filter(event=second).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert messages_expire_due() == 2

    assert states(second) == {"email": "expired", "sms": "expired"}


def test_it_blocks_a_disabled_template(routes, accept, live, smtp_server, sms_gateway):
    Template.objects.filter(pk=routes["email"].pk).update(enabled=False)
    event = accept()

    run_pump()

    email = Message.objects.get(event=event, channel="email")
    assert (email.state, email.last_error) == ("blocked", "template disabled")
    assert smtp_server.messages == []


def test_it_blocks_a_template_that_is_not_whitelisted(
    routes, accept, live, smtp_server, sms_gateway
):
    Template.objects.filter(pk=routes["email"].pk).update(whitelisted=False)
    event = accept()

    run_pump()

    email = Message.objects.get(event=event, channel="email")
    assert (email.state, email.last_error) == ("blocked", "template not whitelisted")


def test_it_reads_the_whitelist_at_send_time_not_at_enqueue(
    routes, accept, live, smtp_server, sms_gateway
):
    event = accept()
    outbox_consume()
    Template.objects.filter(pk=routes["email"].pk).update(whitelisted=False)

    run_pump()

    assert states(event)["email"] == "blocked"


def test_it_blocks_promotional_templates_while_promo_sends_are_off(
    email_only, accept, live, smtp_server
):
    Template.objects.filter(pk=email_only.pk).update(category=Category.PROMOTIONAL)
    event = accept()

    run_pump()

    email = Message.objects.get(event=event, channel="email")
    assert (email.state, email.last_error) == ("blocked", "PROMO_SENDS is off")

    set_flag("PROMO_SENDS", True)
    second = accept()
    run_pump()
    assert states(second)["email"] == "sent"


def test_it_blocks_an_intake_tier_template_in_safe_mode(email_only, accept, live, smtp_server):
    Template.objects.filter(pk=email_only.pk).update(tier=Tier.SAFE_INTAKE)
    event = accept()

    run_pump()

    assert states(event)["email"] == "blocked"


def test_it_holds_messages_while_paused_and_sends_them_in_order_after(
    email_only, accept, live, smtp_server
):
    set_flag("DISPATCH_PAUSED", True)
    events = [accept(sequence=n, ordering_key="k") for n in (1, 2, 3)]

    run_pump()

    assert [states(e)["email"] for e in events] == ["held", "pending", "pending"]
    assert smtp_server.messages == []

    set_flag("DISPATCH_PAUSED", False)
    run_pump()

    assert [states(e)["email"] for e in events] == ["sent", "sent", "sent"]
    assert [m.message["Subject"].split(":")[0] for m in smtp_server.messages] == [
        "Seq 1",
        "Seq 2",
        "Seq 3",
    ]


def test_it_suppresses_an_opted_out_address(routes, accept, live, smtp_server, sms_gateway):
    suppression_add(channel="email", address="ADA@example.org", reason="opt_out", actor="ops")
    event = accept()

    run_pump()

    assert states(event) == {"email": "suppressed", "sms": "sent"}
    assert smtp_server.messages == []


def _promotional_opt_out(address: str) -> None:
    suppression_add(
        channel="email", address=address, reason="opt_out", actor="ops", category="promotional"
    )


def test_a_promotional_opt_out_lets_transactional_mail_through(
    routes, accept, live, smtp_server, sms_gateway
):
    _promotional_opt_out("ada@example.org")
    event = accept()

    run_pump()

    assert states(event) == {"email": "sent", "sms": "sent"}
    [sent] = smtp_server.messages
    assert sent.rcpt_tos == ["ada@example.org"]


def test_a_promotional_opt_out_suppresses_promotional_mail(email_only, accept, live, smtp_server):
    set_flag("PROMO_SENDS", True)
    Template.objects.filter(pk=email_only.pk).update(category=Category.PROMOTIONAL)
    _promotional_opt_out("Ada@Example.org")  # compared case-insensitively
    event = accept()

    run_pump()

    email = Message.objects.get(event=event, channel="email")
    assert email.state == "suppressed"
    row = AuditRecord.objects.get(message_uid=email.uid, kind="message.suppressed")
    assert row.data["reason"] == "address opted out of promotional messages"
    assert smtp_server.messages == []


def test_an_all_suppression_stops_promotional_mail_too(email_only, accept, live, smtp_server):
    set_flag("PROMO_SENDS", True)
    Template.objects.filter(pk=email_only.pk).update(category=Category.PROMOTIONAL)
    suppression_add(channel="email", address="ada@example.org", reason="bounce", actor="ops")
    event = accept()

    run_pump()

    assert states(event) == {"email": "suppressed"}
    assert smtp_server.messages == []


def test_a_lifted_suppression_lets_the_next_message_through(email_only, accept, live, smtp_server):
    suppression_add(channel="email", address="ada@example.org", reason="bounce", actor="ops")
    first = accept()
    run_pump()
    suppression_remove(suppression=Suppression.objects.get(), actor="ops", reason="mailbox fixed")

    second = accept()
    run_pump()

    assert (states(first), states(second)) == ({"email": "suppressed"}, {"email": "sent"})
    assert len(smtp_server.messages) == 1


def test_it_dead_letters_a_message_whose_template_cannot_render(email_only, accept, live):
    template_create(
        key="broken",
        channel="email",
        subject="Hello",
        body="{{ no_such_field }}",
        whitelisted=True,
    )
    Route.objects.filter(channel="email").update(template_key="broken")
    event = accept()

    run_pump()

    email = Message.objects.get(event=event, channel="email")
    assert email.state == "dead"
    assert email.last_error == "render failed: missing variable 'no_such_field'"
    assert email.attempts == 0


def test_it_dead_letters_a_message_without_a_template(email_only, accept, live):
    Route.objects.filter(channel="email").update(template_key="no-such-template")
    event = accept()

    run_pump()

    email = Message.objects.get(event=event, channel="email")
    assert (email.state, email.last_error) == ("dead", "no template 'no-such-template'")


def test_it_writes_a_lineage_row_for_every_state_change(email_only, accept, live, smtp_server):
    event = accept()

    run_pump()

    email = Message.objects.get(event=event, channel="email")
    rows = AuditRecord.objects.filter(message_uid=email.uid).order_by("id")
    assert [(r.kind, r.data.get("from"), r.data.get("to")) for r in rows] == [
        ("message.pending", None, "pending"),
        ("message.dispatching", "pending", "dispatching"),
        ("message.sent", "dispatching", "sent"),
    ]
    assert {r.request_id for r in rows} == {event.request_id}
    assert {r.event_uid for r in rows} == {event.uid}
