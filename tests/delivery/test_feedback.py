"""Provider feedback: a receipt moves a sent message to delivered or undelivered once, adds
the suppression its kind calls for, and changes nothing for a message that never left; a
suppressed address gets nothing more (a real SMTP server and SMS gateway on loopback)."""

from __future__ import annotations

import pytest

from audit.models import AuditRecord
from delivery import feedback
from delivery.feedback import Feedback, feedback_apply_pending, feedback_receive
from delivery.models import Attempt, Message, MessageState, ProviderReceipt, Suppression
from delivery.outbox import outbox_consume
from delivery.providers.email import EmailProvider
from tests.delivery.conftest import run_pump

ADA = "ada@example.org"


def sent_email(accept, smtp_server, **overrides) -> Message:
    event = accept(**overrides)
    run_pump()
    message = Message.objects.get(event=event, channel="email")
    assert message.state == MessageState.SENT
    return message


def receipt(message: Message, kind: str, **fields) -> str:
    """A receipt naming the provider id the send recorded on the message's attempt."""
    attempt = Attempt.objects.get(message=message, outcome="sent")
    return feedback_receive(
        feedback=Feedback(
            provider=attempt.provider,
            provider_message_id=attempt.provider_message_id,
            kind=kind,
            source="test",
            **fields,
        )
    )


def lineage(message: Message, kind: str) -> int:
    return AuditRecord.objects.filter(message_uid=message.uid, kind=kind).count()


def test_it_records_the_message_id_it_set_on_the_attempt(email_only, accept, live, smtp_server):
    message = sent_email(accept, smtp_server)

    attempt = Attempt.objects.get(message=message)
    assert attempt.provider_message_id == EmailProvider().message_id(str(message.uid))
    assert smtp_server.messages[0].message["Message-ID"] == attempt.provider_message_id


def test_it_marks_a_sent_message_delivered_once(email_only, accept, live, smtp_server):
    message = sent_email(accept, smtp_server)

    assert receipt(message, "delivered") == "applied"
    assert receipt(message, "delivered") == "duplicate"

    message.refresh_from_db()
    assert message.state == MessageState.DELIVERED
    assert lineage(message, "message.delivered") == 1
    assert ProviderReceipt.objects.filter(message=message).count() == 1
    row = AuditRecord.objects.get(message_uid=message.uid, kind="message.delivered")
    assert row.data["from"] == "sent"
    assert row.data["receipt"] == "delivered"


def test_it_suppresses_after_a_hard_bounce_and_sends_nothing_more(
    email_only, accept, live, smtp_server
):
    message = sent_email(accept, smtp_server)

    assert receipt(message, "bounced_hard", code="bounced") == "applied"

    message.refresh_from_db()
    assert message.state == MessageState.UNDELIVERED
    suppression = Suppression.objects.get(channel="email", address=ADA)
    assert suppression.reason == Suppression.Reason.BOUNCE
    later = accept()
    run_pump()
    assert Message.objects.get(event=later).state == MessageState.SUPPRESSED
    assert len(smtp_server.messages) == 1  # only the first message ever left


def test_it_suppresses_on_a_complaint_without_moving_the_message(
    email_only, accept, live, smtp_server
):
    message = sent_email(accept, smtp_server)
    receipt(message, "delivered")

    assert receipt(message, "complained") == "applied"

    message.refresh_from_db()
    assert message.state == MessageState.DELIVERED
    assert Suppression.objects.get(address=ADA).reason == Suppression.Reason.COMPLAINT


@pytest.fixture
def two_sent(email_only, accept, live, smtp_server, settings) -> tuple[Message, Message]:
    """Two emails sent to one address, with a soft-bounce limit of two."""
    settings.SOFT_BOUNCE_LIMIT = 2
    return sent_email(accept, smtp_server), sent_email(accept, smtp_server)


def test_it_suppresses_soft_bounces_only_over_the_limit(two_sent):
    first, second = two_sent

    assert receipt(first, "bounced_soft") == "recorded"
    assert not Suppression.objects.exists()
    first.refresh_from_db()
    assert first.state == MessageState.SENT  # the provider still retries it

    assert receipt(second, "bounced_soft") == "applied"
    suppression = Suppression.objects.get(address=ADA)
    assert suppression.reason == Suppression.Reason.BOUNCE
    assert suppression.note.startswith("2 soft bounces within 7 days")


def test_it_does_not_count_soft_bounces_outside_the_window(two_sent):
    first, second = two_sent
    receipt(first, "bounced_soft")
    ProviderReceipt.objects.update(received_at="2000-01-01T00:00:00Z")

    assert receipt(second, "bounced_soft") == "recorded"
    assert not Suppression.objects.exists()


def test_a_late_failure_overrides_delivered_but_never_the_reverse(
    email_only, accept, live, smtp_server
):
    message = sent_email(accept, smtp_server)
    receipt(message, "delivered")

    assert receipt(message, "failed") == "applied"
    message.refresh_from_db()
    assert message.state == MessageState.UNDELIVERED
    assert lineage(message, "message.undelivered") == 1

    other = sent_email(accept, smtp_server)
    receipt(other, "rejected")
    assert receipt(other, "delivered") == "recorded"
    other.refresh_from_db()
    assert other.state == MessageState.UNDELIVERED
    assert lineage(other, "message.delivered") == 0


@pytest.mark.parametrize("state", [MessageState.DRY_RUN, MessageState.DEAD])
def test_a_receipt_for_a_message_that_did_not_leave_changes_nothing(
    email_only, accept, live, smtp_server, state
):
    message = sent_email(accept, smtp_server)
    Message.objects.filter(pk=message.pk).update(state=state)
    before = AuditRecord.objects.count()

    assert receipt(message, "bounced_hard") == "recorded"

    message.refresh_from_db()
    assert message.state == state
    assert not Suppression.objects.exists()
    assert AuditRecord.objects.count() == before
    assert ProviderReceipt.objects.get().state == "recorded"


def test_it_keeps_a_receipt_that_overtook_its_send_and_applies_it_later(
    email_only, accept, live, smtp_server
):
    event = accept()
    outbox_consume()
    message = Message.objects.get(event=event)
    early = Feedback(
        provider="email",
        provider_message_id=EmailProvider().message_id(str(message.uid)),
        kind="delivered",
        source="test",
    )

    assert feedback_receive(feedback=early) == "pending"
    assert feedback_apply_pending() == 0  # the attempt is not there yet

    run_pump()
    assert feedback_apply_pending() == 1

    message.refresh_from_db()
    assert message.state == MessageState.DELIVERED
    assert ProviderReceipt.objects.get().state == "applied"
    assert feedback_apply_pending() == 0


def test_the_ticker_hook_looks_at_pending_receipts_at_most_every_two_seconds(
    db, monkeypatch, settings
):
    calls: list[int] = []
    monkeypatch.setattr(feedback, "_next_sweep", 0.0)
    monkeypatch.setattr(feedback, "feedback_apply_pending", lambda: calls.append(1))

    feedback.feedback_pending_due()
    feedback.feedback_pending_due()  # the ticker's next pass, a fraction of a second later
    assert len(calls) == 1
    monkeypatch.setattr(feedback, "_next_sweep", 0.0)  # two seconds have passed
    feedback.feedback_pending_due()

    assert len(calls) == 2
    assert "delivery.feedback.feedback_pending_due" in settings.TICKER_HOOKS


def test_it_gives_up_on_a_receipt_that_never_matches(db, settings):
    lost = Feedback(provider="twilio", provider_message_id="SMx", kind="delivered", source="t")
    feedback_receive(feedback=lost)
    ProviderReceipt.objects.update(received_at="2000-01-01T00:00:00Z")

    assert feedback_apply_pending() == 0

    assert ProviderReceipt.objects.get().state == "unmatched"


def test_a_5_1_1_reply_at_send_suppresses_the_address(email_only, accept, live, smtp_server):
    smtp_server.reply_for(ADA, 550)  # "5.1.1 ... User unknown"
    first = accept()
    run_pump()
    assert Message.objects.get(event=first).state == MessageState.DEAD
    smtp_server.clear_reply(ADA)

    later = accept()
    run_pump()

    assert Suppression.objects.get(address=ADA).reason == Suppression.Reason.BOUNCE
    assert Message.objects.get(event=later).state == MessageState.SUPPRESSED
    assert smtp_server.messages == []


def test_a_policy_refusal_at_send_does_not_suppress(email_only, accept, live, smtp_server):
    smtp_server.reply_for(ADA, 554)  # "5.7.1 message rejected": about the message
    accept()
    run_pump()

    assert not Suppression.objects.exists()


def test_a_second_message_of_the_batch_to_a_refused_address_is_suppressed(
    email_only, accept, live, smtp_server
):
    smtp_server.reply_for(ADA, 553)  # "5.1.3 mailbox name not allowed"
    first = accept(ordering_key="a")
    second = accept(ordering_key="b")

    run_pump()

    assert {Message.objects.get(event=e).state for e in (first, second)} == {
        MessageState.DEAD,
        MessageState.SUPPRESSED,
    }


def test_an_sms_opt_out_at_send_suppresses_the_number(sms_only, accept, live, sms_gateway):
    sms_gateway.respond(400, sms_gateway.error_body(400, 21610))
    accept()
    run_pump()

    later = accept()
    run_pump()

    suppression = Suppression.objects.get(channel="sms")
    assert suppression.reason == Suppression.Reason.OPT_OUT
    assert Message.objects.get(event=later).state == MessageState.SUPPRESSED
    assert len(sms_gateway.sends) == 1
