"""The retry policy: RETRIES_ENABLED, the attempt limit, and due retries being picked up."""

from __future__ import annotations

from django.utils import timezone

from delivery.models import Message
from tests.delivery.conftest import run_pump, set_flag


def test_it_dead_letters_the_first_failure_when_retries_are_off(
    email_only, accept, live, smtp_server
):
    set_flag("RETRIES_ENABLED", False)
    smtp_server.reply_for("ada@example.org", 421)
    event = accept()

    run_pump()

    message = Message.objects.get(event=event)
    assert message.state == "dead"
    assert message.attempts == 1


def test_it_gives_up_after_the_attempt_limit(email_only, accept, live, smtp_server, settings):
    settings.RETRY_MAX_ATTEMPTS = 3
    smtp_server.reply_for("ada@example.org", 451)
    event = accept()

    for _ in range(3):
        Message.objects.filter(event=event).update(
            next_attempt_at=timezone.now() - timezone.timedelta(seconds=1)
        )
        run_pump()

    message = Message.objects.get(event=event)
    assert message.state == "dead"
    assert message.attempts == 3


def test_it_does_not_retry_before_the_backoff_is_over(email_only, accept, live, smtp_server):
    smtp_server.reply_for("ada@example.org", 451)
    event = accept()
    run_pump()
    smtp_server.clear_reply("ada@example.org")
    Message.objects.filter(event=event).update(
        next_attempt_at=timezone.now() + timezone.timedelta(minutes=5)
    )

    run_pump()

    assert Message.objects.get(event=event).state == "retrying"
    assert smtp_server.messages == []
