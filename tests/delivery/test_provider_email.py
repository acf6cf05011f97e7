"""The email provider against a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import socket
import threading
from collections.abc import Iterator

import pytest
from django.core.mail import EmailMessage, get_connection
from django.core.mail.backends.smtp import EmailBackend as SmtpBackend
from pytest_django.fixtures import Settings

from comcenter.lib.logging import JsonFormatter
from delivery.providers.base import OutboundMessage, Provider, ProviderError
from delivery.providers.email import EmailProvider
from delivery.providers.registry import provider_for, providers_reset
from tests.support.http_stub import HttpStub
from tests.support.logs import raw_records
from tests.support.smtp import ReceivedMail, SmtpServer

ALICE = "alice@example.org"
BOB = "bob@example.org"
BODY = "Dear Bob, the STEM Futures deadline is 2026-12-01."


def outbound(
    to: str = ALICE, uid: str = "msg-0001", *, html: str = "", subject: str = "Deadline soon"
) -> OutboundMessage:
    return OutboundMessage(
        message_uid=uid,
        channel="email",
        to=to,
        subject=subject,
        text=BODY,
        html=html,
        request_id="req-1",
    )


@pytest.fixture
def provider(settings: Settings) -> Provider:
    settings.DEFAULT_FROM_EMAIL = "Comcenter <noreply@mail.example.com>"
    return provider_for("email")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_server(settings: Settings) -> Iterator[int]:
    """A TCP server that accepts connections and never greets: the SMTP client must time out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = listener.getsockname()[1]
    settings.EMAIL_USE_TLS = False
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


def test_it_sends_text_and_html_with_a_deterministic_message_id(
    smtp_server: SmtpServer, provider: Provider
) -> None:
    with provider.open(timeout=5) as session:
        result = session.send(outbound(html="<p>Dear Bob</p>"))

    [mail] = smtp_server.messages
    assert mail.mail_from == "noreply@mail.example.com"
    assert mail.rcpt_tos == [ALICE]
    message = mail.message
    assert message["From"] == "Comcenter <noreply@mail.example.com>"
    assert message["To"] == ALICE
    assert message["Subject"] == "Deadline soon"
    assert message["Message-ID"] == "<msg-0001@mail.example.com>"
    assert message.get_content_type() == "multipart/alternative"
    plain, html = message.iter_parts()
    assert plain.get_content_type() == "text/plain"
    assert plain.get_content().strip() == BODY
    assert html.get_content_type() == "text/html"
    assert html.get_content().strip() == "<p>Dear Bob</p>"
    assert result.provider_message_id == "<msg-0001@mail.example.com>"
    assert result.response_code == "250"


def test_it_sends_a_single_text_part_without_html(
    smtp_server: SmtpServer, provider: Provider
) -> None:
    with provider.open(timeout=5) as session:
        session.send(outbound())

    message = smtp_server.messages[0].message
    assert message.get_content_type() == "text/plain"
    assert message.get_content().strip() == BODY


def test_it_gives_every_attempt_of_a_message_the_same_message_id(
    smtp_server: SmtpServer, provider: Provider
) -> None:
    for uid in ("msg-0001", "msg-0001", "msg-0002"):
        with provider.open(timeout=5) as session:
            session.send(outbound(uid=uid))

    ids = [mail.message["Message-ID"] for mail in smtp_server.messages]
    assert ids[0] == ids[1]
    assert ids[2] != ids[0]


def test_it_reuses_one_smtp_connection_for_a_batch(
    smtp_server: SmtpServer, provider: Provider
) -> None:
    with provider.open(timeout=5) as session:
        for n in range(5):
            session.send(outbound(uid=f"msg-{n}"))

    assert len(smtp_server.messages) == 5
    assert smtp_server.connections == 1


# Messages the session builds itself (delivery/providers/mime.py) and messages it leaves to
# Django (non-ASCII subject or address, a line over 998 bytes, a folded subject).
EQUIVALENT_CASES = [
    {"subject": "Reminder 3 for student-7"},
    {"subject": "Reminder 3 for student-7", "html": "<p>Dear Bob</p>\n"},
    {"subject": "Grüße aus Köln", "text": "Grüße,\r\nBob\n", "html": "<p>Grüße</p>"},
    {"subject": "Deadline soon", "text": "Línea\n\nnaïve \u0441\u0440\u043e\u043a 2026-12-01"},
    {"subject": "Deadline soon", "to": "bob.o'hara+stem@Mail.Example.ORG"},
    {"subject": "Deadline soon", "to": "jürgen@bücher.example"},
    {"subject": "Deadline " * 12, "text": "x" * 1200},
    {"subject": "Deadline soon", "text": "From the office:\n.\n..dots\n"},
]
_DATE_LINE = re.compile(rb"^Date: [^\r\n]*\r\n", re.MULTILINE)
_BOUNDARY = re.compile(rb"===============\d{19}==")


def _received(mail: ReceivedMail) -> tuple[str, list[str], bytes]:
    """What the server received, with the Date and the multipart boundary (fresh per
    message on every path) blanked."""
    data = _BOUNDARY.sub(b"BOUNDARY", _DATE_LINE.sub(b"Date: DATE\r\n", mail.data))
    return mail.mail_from, mail.rcpt_tos, data


@pytest.mark.parametrize("case", EQUIVALENT_CASES)
def test_it_sends_what_djangos_email_backend_sends(
    smtp_server: SmtpServer, provider: Provider, case: dict[str, str]
) -> None:
    message = dataclasses.replace(outbound(), **case)
    with provider.open(timeout=5) as session:
        session.send(message)
    assert isinstance(provider, EmailProvider)
    email = provider.email_build(message, provider.message_id(message.message_uid))
    assert get_connection(fail_silently=False).send_messages([email]) == 1

    ours, djangos = smtp_server.messages
    assert _received(ours) == _received(djangos)
    assert ours.message["Message-ID"] == "<msg-0001@mail.example.com>"


class SigningBackend(SmtpBackend):
    """An SMTP backend that changes the message it sends, as a DKIM-signing one does."""

    def _send(self, email_message: EmailMessage) -> bool:
        email_message.extra_headers["X-Signed"] = "yes"
        # _send is the backend's private hook, which django-stubs does not declare.
        return bool(super()._send(email_message))  # type: ignore[misc]


def test_it_sends_through_a_subclass_of_the_smtp_backend_as_it_is(
    smtp_server: SmtpServer, provider: Provider, settings: Settings
) -> None:
    settings.EMAIL_BACKEND = f"{__name__}.SigningBackend"
    with provider.open(timeout=5) as session:
        session.send(outbound())

    [mail] = smtp_server.messages
    assert mail.message["X-Signed"] == "yes"


@pytest.mark.parametrize(
    ("code", "stage", "permanent"),
    [
        (550, "rcpt", True),
        (553, "rcpt", True),
        (554, "data", True),
        (421, "rcpt", False),
        (450, "rcpt", False),
        (452, "rcpt", False),
        (451, "data", False),
        (421, "data", False),
    ],
)
def test_it_classifies_smtp_replies_by_their_first_digit(
    smtp_server: SmtpServer, provider: Provider, code: int, stage: str, permanent: bool
) -> None:
    smtp_server.reply_for(BOB, code, at=stage)  # type: ignore[arg-type]

    with provider.open(timeout=5) as session, pytest.raises(ProviderError) as caught:
        session.send(outbound(to=BOB))

    assert caught.value.permanent is permanent
    assert caught.value.response_code == str(code)
    assert caught.value.retry_after is None
    assert smtp_server.messages == []


def test_it_names_the_enhanced_status_but_never_the_address(
    smtp_server: SmtpServer, provider: Provider
) -> None:
    smtp_server.reply_for(BOB, 550)

    with provider.open(timeout=5) as session, pytest.raises(ProviderError) as caught:
        session.send(outbound(to=BOB))

    assert caught.value.message == "SMTP 550 at RCPT: mailbox unavailable (5.1.1)"
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ is True


def test_it_keeps_the_connection_after_a_permanent_rejection(
    smtp_server: SmtpServer, provider: Provider
) -> None:
    smtp_server.reply_for(BOB, 550)

    with provider.open(timeout=5) as session:
        with pytest.raises(ProviderError):
            session.send(outbound(to=BOB, uid="msg-bob"))
        session.send(outbound(to=ALICE, uid="msg-alice"))

    assert [mail.rcpt_tos for mail in smtp_server.messages] == [[ALICE]]
    assert smtp_server.connections == 1


def test_it_reconnects_after_the_server_closes_with_421(
    smtp_server: SmtpServer, provider: Provider
) -> None:
    smtp_server.reply_for(BOB, 421)

    with provider.open(timeout=5) as session:
        with pytest.raises(ProviderError) as caught:
            session.send(outbound(to=BOB, uid="msg-bob"))
        session.send(outbound(to=ALICE, uid="msg-alice"))

    assert caught.value.permanent is False
    assert [mail.rcpt_tos for mail in smtp_server.messages] == [[ALICE]]
    assert smtp_server.connections == 2


def test_it_reports_a_server_that_is_down_as_transient(
    settings: Settings, provider: Provider
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = free_port()

    with provider.open(timeout=2) as session, pytest.raises(ProviderError) as caught:
        session.send(outbound())

    assert caught.value.permanent is False
    assert caught.value.response_code == "connection_error"


def test_it_reports_a_silent_server_as_a_transient_timeout(
    silent_server: int, provider: Provider
) -> None:
    with provider.open(timeout=0.3) as session, pytest.raises(ProviderError) as caught:
        session.send(outbound())

    assert caught.value.permanent is False
    assert caught.value.response_code == "timeout"


def test_it_rejects_a_header_injection_permanently(
    smtp_server: SmtpServer, provider: Provider
) -> None:
    with provider.open(timeout=5) as session, pytest.raises(ProviderError) as caught:
        session.send(outbound(subject="Hello\nBcc: mallory@example.net"))

    assert caught.value.permanent is True
    assert caught.value.response_code == "invalid_message"
    assert smtp_server.messages == []


def test_it_refuses_to_open_when_not_configured(settings: Settings) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
    provider = provider_for("email")

    with pytest.raises(ProviderError) as caught:
        provider.open(timeout=5)

    assert provider.is_configured() is False
    assert caught.value.permanent is True
    assert caught.value.response_code == "not_configured"
    assert "EMAIL_URL" in caught.value.message
    health = provider.health()
    assert health.ok is False
    assert "not configured" in health.detail
    assert "EMAIL_URL" in health.detail


def test_it_reports_health_with_a_noop(smtp_server: SmtpServer, provider: Provider) -> None:
    health = provider.health()

    assert health.ok is True
    assert health.detail == f"smtp 127.0.0.1:{smtp_server.port}: NOOP 250"
    assert smtp_server.connections == 1


def test_it_reports_an_unreachable_server_as_unhealthy(
    settings: Settings, provider: Provider
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = free_port()

    health = provider_for("email").health()

    assert health.ok is False
    assert "connection failed" in health.detail


def test_it_caches_health_for_a_few_seconds(smtp_server: SmtpServer, provider: Provider) -> None:
    assert provider.health().ok is True
    smtp_server.stop()

    cached = provider.health()
    providers_reset()
    fresh = provider_for("email").health()

    assert cached.ok is True
    assert fresh.ok is False
    assert smtp_server.connections == 1


def test_it_logs_a_failed_send_without_address_or_body(
    smtp_server: SmtpServer, provider: Provider
) -> None:
    smtp_server.reply_for(BOB, 550)

    with (
        raw_records("delivery.providers", "comcenter.lib") as records,
        provider.open(timeout=5) as session,
        pytest.raises(ProviderError),
    ):
        session.send(outbound(to=BOB, html="<p>secret html</p>"))

    [failure] = [r for r in records if r.getMessage() == "email send failed"]
    assert failure.levelno == logging.WARNING
    formatter = JsonFormatter()
    assert json.loads(formatter.format(failure))["response_code"] == "550"
    # Raw records: the JSON formatter would redact, hiding what the provider emitted.
    logged = "\n".join(f"{record.getMessage()} {vars(record)}" for record in records)
    for secret in (BOB, "bob@", BODY, "secret html", "Deadline soon"):
        assert secret not in logged


@pytest.fixture
def postmark(settings: Settings, http_stub: HttpStub) -> HttpStub:
    """An anymail ESP selected by settings alone, its API played by a loopback server."""
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {
        "POSTMARK_SERVER_TOKEN": "pm-server-token",
        "POSTMARK_API_URL": f"{http_stub.url}/",
    }
    return http_stub


def test_it_sends_through_an_anymail_esp(postmark: HttpStub, provider: Provider) -> None:
    postmark.respond(200, {"To": ALICE, "MessageID": "pm-0001", "ErrorCode": 0, "Message": "OK"})

    with provider.open(timeout=5) as session:
        result = session.send(outbound(html="<p>Dear Bob</p>"))

    [request] = postmark.requests
    payload = json.loads(request.body)
    assert request.path == "/email"
    assert payload["To"] == ALICE
    assert payload["TextBody"] == BODY
    assert payload["HtmlBody"] == "<p>Dear Bob</p>"
    assert {"Name": "Message-ID", "Value": "<msg-0001@mail.example.com>"} in payload["Headers"]
    assert result.provider_message_id == "pm-0001"
    assert result.response_code == "sent"


@pytest.mark.parametrize(
    ("status", "body", "headers", "permanent", "retry_after"),
    [
        (401, {"ErrorCode": 10, "Message": "Bad or missing API token"}, {}, True, None),
        (422, {"ErrorCode": 300, "Message": "Invalid email request"}, {}, True, None),
        (429, {"ErrorCode": 0, "Message": "Rate limited"}, {"Retry-After": "30"}, False, 30.0),
        (503, None, {}, False, None),
    ],
)
def test_it_classifies_esp_answers_by_http_status(
    postmark: HttpStub,
    provider: Provider,
    status: int,
    body: object,
    headers: dict[str, str],
    permanent: bool,
    retry_after: float | None,
) -> None:
    postmark.respond(status, body, headers)

    with provider.open(timeout=5) as session, pytest.raises(ProviderError) as caught:
        session.send(outbound())

    assert caught.value.permanent is permanent
    assert caught.value.response_code == str(status)
    assert caught.value.retry_after == retry_after
    assert ALICE not in caught.value.message


def test_it_reports_an_unreachable_esp_as_transient(settings: Settings, provider: Provider) -> None:
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {
        "POSTMARK_SERVER_TOKEN": "pm-server-token",
        "POSTMARK_API_URL": f"http://127.0.0.1:{free_port()}/",
    }

    with provider.open(timeout=5) as session, pytest.raises(ProviderError) as caught:
        session.send(outbound())

    assert caught.value.permanent is False
    assert caught.value.response_code == "connection_error"


def test_it_refuses_to_open_an_esp_without_its_api_key(settings: Settings) -> None:
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {}
    provider = provider_for("email")

    with pytest.raises(ProviderError) as caught:
        provider.open(timeout=5)

    assert caught.value.permanent is True
    assert caught.value.response_code == "not_configured"
    assert provider.health().ok is False
