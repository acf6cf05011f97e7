"""No body, address, phone number or token survives into a log line, whatever path it takes:
message text, format arguments, extra fields, exception text, stack trace."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from comcenter.lib.logging import (
    JsonFormatter,
    RedactFilter,
    RequestIdFilter,
    sensitive_values,
)

EMAIL = "alice.smith@example.org"
PHONE = "+12025550123"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjY19hYmMifQ.dGhpc2lzYXNpZ25hdHVyZQ"
CLIENT_SECRET = "ccs_Zq3vK9xW2mP7tR4yB8nL1cH6"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SMTP_PASSWORD = "hunter2-smtp-pass"
BODY = "Your one-time code is 493021, valid for 10 minutes"

EVERY_SECRET = (EMAIL, PHONE, JWT, CLIENT_SECRET, WEBHOOK_SECRET, SMTP_PASSWORD, BODY, "493021")


class Stream:
    """A handler built like the configured `stdout` one, writing into memory."""

    def __init__(self, *, with_filters: bool = True) -> None:
        self.buffer = io.StringIO()
        self.handler = logging.StreamHandler(self.buffer)
        self.handler.setFormatter(JsonFormatter())
        if with_filters:
            self.handler.addFilter(RequestIdFilter())
            self.handler.addFilter(RedactFilter())

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.buffer.getvalue().splitlines()]

    def text(self) -> str:
        return self.buffer.getvalue()


@pytest.fixture(params=[True, False], ids=["filter+formatter", "formatter-alone"])
def stream(request: pytest.FixtureRequest) -> Iterator[Stream]:
    out = Stream(with_filters=request.param)
    logger = logging.getLogger("tests.ops.redaction")
    logger.addHandler(out.handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield out
    logger.removeHandler(out.handler)


def _assert_clean(stream: Stream) -> None:
    text = stream.text()
    assert text, "nothing was logged"
    for secret in EVERY_SECRET:
        assert secret not in text
    assert "[redacted]" in text


log = logging.getLogger("tests.ops.redaction")


def test_it_redacts_the_message_text(stream: Stream) -> None:
    log.info(f"sending to {EMAIL} and {PHONE} with Bearer {JWT}")
    log.info(f"client_secret={CLIENT_SECRET} webhook {WEBHOOK_SECRET}")
    log.info(f"smtp://mailer:{SMTP_PASSWORD}@smtp.example.org:587")
    _assert_clean_of(stream, EMAIL, PHONE, JWT, CLIENT_SECRET, WEBHOOK_SECRET, SMTP_PASSWORD)


def _assert_clean_of(stream: Stream, *secrets: str) -> None:
    text = stream.text()
    for secret in secrets:
        assert secret not in text
    assert "[redacted]" in text


def test_it_redacts_format_arguments(stream: Stream) -> None:
    log.info("to %s phone %s token %s", EMAIL, PHONE, JWT)
    log.warning("message %s", {"body": BODY, "to": EMAIL, "channel": "sms"})
    log.warning("payload %(payload)s for %(who)s", {"payload": BODY, "who": PHONE})
    log.info("attempt %d of %d", 2, 8)
    _assert_clean_of(stream, EMAIL, PHONE, JWT, BODY)
    lines = stream.lines()
    assert "'channel': 'sms'" in lines[1]["msg"]  # what is not sensitive stays readable
    assert lines[3]["msg"] == "attempt 2 of 8"


def test_it_redacts_extra_fields(stream: Stream) -> None:
    class Recipient:
        def __str__(self) -> str:
            return f"Recipient({EMAIL}, {PHONE})"

    log.warning(
        "delivery failed",
        extra={
            "body": BODY,
            "recipient_email": EMAIL,
            "sms_auth_token": SMTP_PASSWORD,
            "note": f"gateway said {PHONE} is invalid",
            "nested": {"message": {"text": BODY, "to": [EMAIL]}, "secret": CLIENT_SECRET},
            "who": Recipient(),
            "idempotency_key": "scholarship-api:evt-81f3",
            "channel": "sms",
        },
    )
    _assert_clean_of(stream, EMAIL, PHONE, BODY, SMTP_PASSWORD, CLIENT_SECRET)
    (line,) = stream.lines()
    assert line["body"] == "[redacted]"
    assert line["idempotency_key"] == "scholarship-api:evt-81f3"
    assert line["channel"] == "sms"


def test_it_redacts_exception_text(stream: Stream) -> None:
    try:
        raise ValueError(f"invalid address {EMAIL} for {PHONE}; auth {JWT}")
    except ValueError:
        log.exception("send failed")
    _assert_clean_of(stream, EMAIL, PHONE, JWT)
    (line,) = stream.lines()
    assert "ValueError" in line["exc"]
    assert line["msg"] == "send failed"


def test_it_redacts_stack_traces(stream: Stream) -> None:
    # A stack trace quotes source lines, and this one quotes an address.
    log.info("sending", stack_info=True)  # to alice.smith@example.org
    (line,) = stream.lines()
    assert "test_it_redacts_stack_traces" in line["stack"]
    _assert_clean_of(stream, EMAIL)


def test_it_redacts_declared_free_text_on_every_path(stream: Stream) -> None:
    # A body has no recognisable shape: the code holding it declares it.
    with sensitive_values(BODY, "Deadline for STEM Futures"):
        log.info(f"rendered: {BODY}")
        log.info("rendered %s", BODY)
        log.info("rendered", extra={"preview": BODY})
        try:
            raise RuntimeError(f"gateway rejected '{BODY}'")
        except RuntimeError:
            log.exception("subject %s", "Deadline for STEM Futures")
    log.info("after the block, ordinary text stays: Deadline")
    _assert_clean_of(stream, BODY, "Deadline for STEM Futures")
    assert stream.lines()[-1]["msg"].endswith("Deadline")


def test_it_keeps_everything_out_at_once(stream: Stream) -> None:
    with sensitive_values(BODY):
        try:
            raise RuntimeError(f"{BODY} to {EMAIL}")
        except RuntimeError:
            log.error(
                "failed for %s",
                PHONE,
                exc_info=True,
                extra={"body": BODY, "token": CLIENT_SECRET},
            )
    log.info(f"url smtp://u:{SMTP_PASSWORD}@host/ secret {WEBHOOK_SECRET} jwt {JWT}")
    _assert_clean(stream)


def test_it_logs_a_refused_host_header_as_one_warning_without_a_traceback(client, caplog):
    with caplog.at_level(logging.WARNING, logger="django.security"):
        response = client.get("/health/live", HTTP_HOST="evil.example")
    assert response.status_code == 400
    (record,) = [r for r in caplog.records if r.name == "django.security.DisallowedHost"]
    assert record.levelname == "WARNING"
    assert record.exc_info is None
    assert record.exc_text is None
