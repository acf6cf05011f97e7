"""Permanent and transient SMS failures, from real HTTP answers through the dispatcher."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from delivery.models import Attempt, Message
from tests.delivery.conftest import run_pump


def test_it_dead_letters_a_400(sms_only, accept, live, sms_gateway):
    sms_gateway.respond(400, sms_gateway.error_body(400, 21211, "Invalid 'To' Phone Number"))
    event = accept()

    run_pump()

    message = Message.objects.get(event=event)
    assert message.state == "dead"
    attempt = Attempt.objects.get(message=message)
    assert attempt.outcome == "permanent_error"
    assert attempt.response_code.split(":")[0] == "400"


def test_it_waits_at_least_retry_after_on_a_429(sms_only, accept, live, sms_gateway):
    sms_gateway.respond(429, sms_gateway.error_body(429, 20429), headers={"Retry-After": "120"})
    event = accept()
    before = timezone.now()

    run_pump()

    message = Message.objects.get(event=event)
    assert message.state == "retrying"
    assert message.next_attempt_at >= before + timedelta(seconds=119)
    assert Attempt.objects.get(message=message).response_code.split(":")[0] == "429"


def test_it_retries_a_503_and_sends_when_the_gateway_recovers(
    sms_only, accept, live, sms_gateway, settings
):
    # A 503 opens the gateway's circuit (delivery/circuit.py); probe again at once here.
    settings.PROVIDER_PROBE_SECONDS = 0
    sms_gateway.respond(503, sms_gateway.error_body(503, 20503))
    event = accept()

    run_pump()

    message = Message.objects.get(event=event)
    assert message.state == "retrying"
    assert Attempt.objects.get(message=message).outcome == "transient_error"

    Message.objects.filter(pk=message.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    run_pump()

    message.refresh_from_db()
    assert message.state == "sent"
    assert len(sms_gateway.sends) == 2
    # Both attempts carried the same idempotency key, so a gateway can drop a resend.
    assert {r.headers["Idempotency-Key"] for r in sms_gateway.sends} == {str(message.uid)}
