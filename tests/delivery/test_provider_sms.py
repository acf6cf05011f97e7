"""The SMS provider against a real loopback HTTP server speaking Twilio's Messages API."""

from __future__ import annotations

import base64
import json
import logging
import socket

import pytest
from pytest_django.fixtures import Settings

from comcenter.lib.logging import JsonFormatter
from delivery.providers.base import OutboundMessage, Provider, ProviderError
from delivery.providers.registry import provider_for, providers_reset
from tests.support.logs import raw_records
from tests.support.sms_gateway import SmsGateway

ALICE_PHONE = "+12025550123"
BOB_PHONE = "+12025550199"
BODY = "STEM Futures closes 2026-12-01. Reply STOP to opt out."


def outbound(to: str = ALICE_PHONE, uid: str = "msg-0001") -> OutboundMessage:
    return OutboundMessage(
        message_uid=uid, channel="sms", to=to, subject="", text=BODY, html="", request_id="req-1"
    )


@pytest.fixture
def provider(sms_gateway: SmsGateway) -> Provider:
    return provider_for("sms")


def send_failing(provider: Provider, message: OutboundMessage, timeout: float = 5) -> ProviderError:
    with provider.open(timeout=timeout) as session, pytest.raises(ProviderError) as caught:
        session.send(message)
    return caught.value


def test_it_posts_the_twilio_form_with_basic_auth(
    sms_gateway: SmsGateway, provider: Provider
) -> None:
    with provider.open(timeout=5) as session:
        result = session.send(outbound())

    [request] = sms_gateway.requests
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{sms_gateway.account_sid}/Messages.json"
    assert request.form == {"To": ALICE_PHONE, "From": sms_gateway.from_number, "Body": BODY}
    credentials = f"{sms_gateway.account_sid}:{sms_gateway.auth_token}".encode()
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(credentials).decode()
    assert request.headers["Idempotency-Key"] == "msg-0001"
    assert request.headers["User-Agent"] == "comcenter/0.1.0"
    assert result.provider_message_id == sms_gateway.delivered["msg-0001"]
    assert result.provider_message_id.startswith("SM")
    assert result.response_code == "201"


def test_it_reuses_one_keep_alive_connection_for_a_batch(
    sms_gateway: SmsGateway, provider: Provider
) -> None:
    with provider.open(timeout=5) as session:
        for n in range(3):
            session.send(outbound(uid=f"msg-{n}"))

    assert len(sms_gateway.sends) == 3
    assert len({request.client_port for request in sms_gateway.sends}) == 1


def test_it_retries_a_timed_out_send_under_the_same_idempotency_key(
    sms_gateway: SmsGateway, provider: Provider
) -> None:
    sms_gateway.answer_late(2.0)

    error = send_failing(provider, outbound(), timeout=0.3)
    with provider.open(timeout=5) as session:
        result = session.send(outbound())

    assert error.permanent is False
    assert error.response_code == "timeout"
    assert [r.headers["Idempotency-Key"] for r in sms_gateway.sends] == ["msg-0001", "msg-0001"]
    # The gateway took the first request; the retry is recognised, not sent twice.
    assert sms_gateway.delivered == {"msg-0001": result.provider_message_id}


def test_it_classifies_a_400_with_a_twilio_code_as_permanent(
    sms_gateway: SmsGateway, provider: Provider
) -> None:
    sms_gateway.respond(
        400, sms_gateway.error_body(400, 21211, f"The 'To' number {BOB_PHONE} is not valid")
    )

    error = send_failing(provider, outbound(to=BOB_PHONE))

    assert error.permanent is True
    assert error.response_code == "400:21211"
    assert error.message == "gateway answered 400: invalid 'To' phone number"
    assert error.__cause__ is None


@pytest.mark.parametrize("retry_after", ["7", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_it_classifies_429_as_transient_with_its_retry_after(
    sms_gateway: SmsGateway, provider: Provider, retry_after: str
) -> None:
    sms_gateway.respond(
        429, sms_gateway.error_body(429, 20429, "Too Many Requests"), {"Retry-After": retry_after}
    )

    error = send_failing(provider, outbound())

    assert error.permanent is False
    assert error.response_code == "429:20429"
    # A date in the past means "now".
    assert error.retry_after == (7.0 if retry_after == "7" else 0.0)


def test_it_classifies_503_as_transient(sms_gateway: SmsGateway, provider: Provider) -> None:
    sms_gateway.respond(503, b"<html>upstream unavailable</html>")

    error = send_failing(provider, outbound())

    assert error.permanent is False
    assert error.response_code == "503"
    assert error.retry_after is None


def test_it_classifies_wrong_credentials_as_permanent(
    sms_gateway: SmsGateway, settings: Settings
) -> None:
    settings.SMS_AUTH_TOKEN = "not-the-token"

    error = send_failing(provider_for("sms"), outbound())

    assert error.permanent is True
    assert error.response_code == "401:20003"
    assert sms_gateway.delivered == {}


def test_it_reports_a_gateway_that_is_down_as_transient(settings: Settings) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.SMS_GATEWAY_URL = f"http://127.0.0.1:{port}"
    settings.SMS_ACCOUNT_SID = "AC0000"
    settings.SMS_AUTH_TOKEN = "token"
    settings.SMS_FROM = "+15005550006"

    error = send_failing(provider_for("sms"), outbound())

    assert error.permanent is False
    assert error.response_code == "connection_error"


def test_it_takes_a_2xx_without_a_sid_as_sent(sms_gateway: SmsGateway, provider: Provider) -> None:
    sms_gateway.respond(201, b"not json")

    with provider.open(timeout=5) as session:
        result = session.send(outbound())

    assert result.response_code == "201"
    assert result.provider_message_id == ""


def test_it_refuses_to_open_when_not_configured(settings: Settings) -> None:
    settings.SMS_GATEWAY_URL = ""
    provider = provider_for("sms")

    with pytest.raises(ProviderError) as caught:
        provider.open(timeout=5)

    assert caught.value.permanent is True
    assert caught.value.response_code == "not_configured"
    assert "SMS_GATEWAY_URL" in caught.value.message
    health = provider.health()
    assert health.ok is False
    assert "not configured" in health.detail


def test_it_checks_health_with_a_get_of_the_account(
    sms_gateway: SmsGateway, provider: Provider
) -> None:
    health = provider.health()

    [request] = sms_gateway.requests
    assert health.ok is True
    assert health.detail == f"gateway 127.0.0.1:{sms_gateway.port}: 200"
    assert request.method == "GET"
    assert request.path == f"/2010-04-01/Accounts/{sms_gateway.account_sid}.json"
    assert request.headers["User-Agent"] == "comcenter/0.1.0"
    assert sms_gateway.sends == []


def test_it_caches_health_for_a_few_seconds(sms_gateway: SmsGateway, provider: Provider) -> None:
    sms_gateway.respond(503, on="account")

    first = provider.health()
    second = provider.health()
    providers_reset()
    third = provider_for("sms").health()

    assert first.ok is False
    assert "503" in first.detail
    assert second == first
    assert third.ok is True
    assert len(sms_gateway.requests) == 2


def test_it_reports_wrong_credentials_as_unhealthy(
    sms_gateway: SmsGateway, settings: Settings
) -> None:
    settings.SMS_AUTH_TOKEN = "not-the-token"

    health = provider_for("sms").health()

    assert health.ok is False
    assert "401" in health.detail
    assert "not-the-token" not in health.detail


def test_it_logs_a_failed_send_without_phone_body_or_token(
    sms_gateway: SmsGateway, provider: Provider
) -> None:
    sms_gateway.respond(
        400, sms_gateway.error_body(400, 21211, f"The 'To' number {BOB_PHONE} is not valid")
    )

    with raw_records("delivery.providers", "comcenter.lib") as records:
        send_failing(provider, outbound(to=BOB_PHONE))

    [failure] = [r for r in records if r.getMessage() == "sms send failed"]
    assert failure.levelno == logging.WARNING
    formatter = JsonFormatter()
    assert json.loads(formatter.format(failure))["response_code"] == "400:21211"
    # Raw records: the JSON formatter would redact, hiding what the provider emitted.
    logged = "\n".join(f"{record.getMessage()} {vars(record)}" for record in records)
    for secret in (BOB_PHONE, "2025550199", BODY, sms_gateway.auth_token):
        assert secret not in logged
