"""Permanent and transient email failures, from real SMTP replies through the dispatcher."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from delivery.models import Attempt, Message
from tests.delivery.conftest import run_pump


def test_it_dead_letters_a_550_without_retrying(email_only, accept, live, smtp_server):
    smtp_server.reply_for("ada@example.org", 550)
    event = accept()

    run_pump()

    message = Message.objects.get(event=event)
    assert message.state == "dead"
    assert message.attempts == 1
    assert message.last_error == "SMTP 550 at RCPT: mailbox unavailable (5.1.1)"
    attempt = Attempt.objects.get(message=message)
    assert (attempt.outcome, attempt.response_code) == ("permanent_error", "550")
    assert "ada@example.org" not in message.last_error + attempt.error


def test_it_retries_a_421_later_and_then_sends(email_only, accept, live, smtp_server):
    smtp_server.reply_for("ada@example.org", 421)
    event = accept()
    before = timezone.now()

    run_pump()

    message = Message.objects.get(event=event)
    assert message.state == "retrying"
    assert message.attempts == 1
    assert before <= message.next_attempt_at <= before + timedelta(seconds=31)
    assert Attempt.objects.get(message=message).outcome == "transient_error"

    smtp_server.clear_reply("ada@example.org")
    Message.objects.filter(pk=message.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    run_pump()

    message.refresh_from_db()
    assert message.state == "sent"
    assert message.attempts == 2
    assert list(
        Attempt.objects.filter(message=message).order_by("id").values_list("number", "outcome")
    ) == [
        (1, "transient_error"),
        (2, "sent"),
    ]
    assert len(smtp_server.messages) == 1


def test_it_keeps_sending_the_batch_after_a_failure(email_only, accept, live, smtp_server):
    smtp_server.reply_for("bad@example.org", 550)
    good = accept(recipient={"id": "r1", "email": "good@example.org"})
    bad = accept(recipient={"id": "r2", "email": "bad@example.org"})
    other = accept(recipient={"id": "r3", "email": "other@example.org"})

    run_pump()

    assert [Message.objects.get(event=e).state for e in (good, bad, other)] == [
        "sent",
        "dead",
        "sent",
    ]


def test_it_dead_letters_email_when_no_transport_is_configured(email_only, accept, live, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
    event = accept()

    run_pump()

    message = Message.objects.get(event=event)
    assert message.state == "dead"
    assert "not configured" in message.last_error
