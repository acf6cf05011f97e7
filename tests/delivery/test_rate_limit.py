"""The shared send rate limit (database rows, so every process draws from one budget)."""

from __future__ import annotations

import pytest

from delivery.models import Message, RateBucket
from delivery.ratelimit import ratelimit_acquire, ratelimit_refund
from tests.delivery.conftest import run_pump, set_flag, wait_until


def test_it_grants_a_burst_then_makes_senders_wait(db, settings):
    settings.SEND_RATE_PER_MINUTE = 60

    first = ratelimit_acquire(provider="email", want=10)
    second = ratelimit_acquire(provider="email", want=10)

    assert first.granted == 1
    assert second.granted == 0
    assert 0.9 <= second.wait_seconds <= 1.0


def test_it_takes_back_what_was_not_used(db, settings):
    settings.SEND_RATE_PER_MINUTE = 60
    assert ratelimit_acquire(provider="email", want=1).granted == 1

    ratelimit_refund(provider="email", count=1)

    assert ratelimit_acquire(provider="email", want=1).granted == 1


def test_it_applies_the_stricter_of_the_global_and_provider_limits(db, settings):
    settings.SEND_RATE_PER_MINUTE = 600
    settings.SEND_RATE_PER_MINUTE_BY_PROVIDER = {"twilio": 120}

    assert ratelimit_acquire(provider="twilio", want=50).granted == 2
    assert ratelimit_acquire(provider="email", want=50).granted == 8
    assert set(RateBucket.objects.values_list("name", flat=True)) == {
        "global",
        "provider:twilio",
        "provider:email",
    }


def test_a_message_over_the_limit_waits_and_is_not_dropped(
    email_only, accept, live, smtp_server, settings
):
    # A burst of one, then one every 10 s: a pump run ends long before the next token, even
    # on a loaded machine (at one a second, slow passes earned a token each and sent them all).
    settings.SEND_RATE_PER_MINUTE = 6
    set_flag("RATE_LIMIT_ENABLED", True)
    events = [accept(recipient={"id": f"r{n}"}) for n in range(15)]

    run_pump()

    assert len(smtp_server.messages) == 1
    assert Message.objects.filter(state="pending").count() == 14
    assert not Message.objects.filter(state="dead").exists()

    RateBucket.objects.update(tat=None)  # ten seconds later, in effect
    run_pump()

    assert len(smtp_server.messages) == 2
    assert (
        sorted(Message.objects.get(event=e).state for e in events)
        == ["pending"] * 13 + ["sent"] * 2
    )


def test_dry_run_does_not_spend_the_send_budget(email_only, accept, settings):
    settings.SEND_RATE_PER_MINUTE = 60
    set_flag("RATE_LIMIT_ENABLED", True)
    for n in range(5):
        accept(recipient={"id": f"r{n}"})

    run_pump()

    assert Message.objects.filter(state="dry_run").count() == 5
    assert ratelimit_acquire(provider="email", want=1).granted == 1


@pytest.mark.slow
def test_the_limit_holds_across_two_worker_processes(workers, email_only, accept, smtp_server):
    set_flag("DISABLE_SEND", False)
    set_flag("RATE_LIMIT_ENABLED", True)
    for n in range(12):
        accept(recipient={"id": f"student-{n}", "email": f"student-{n}@example.org"})

    # 60 a minute: a burst of one, then one a second, shared by both processes.
    workers.start(2, EMAIL_URL=smtp_server.email_url, SEND_RATE_PER_MINUTE="60")
    wait_until(lambda: len(smtp_server.messages) >= 4)
    workers.stop()

    sent = list(Message.objects.filter(state="sent").values_list("dispatched_at", flat=True))
    span = (max(sent) - min(sent)).total_seconds()
    # Two processes limiting on their own would send about twice this.
    assert len(sent) <= 1 + span * 1.0 + 1
    assert len(smtp_server.messages) == len(sent)
    assert Message.objects.filter(state="pending").count() == 12 - len(sent)
