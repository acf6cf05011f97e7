"""The provider session's one pipeline (check -> deliver -> classify -> log once), as every
vendor runs it, and the HTTP classification the SMS gateway and the helpdesk share."""

from __future__ import annotations

import logging

import pytest

from comcenter.lib.http import HttpError
from delivery.providers.base import (
    CODE_CONNECTION,
    CODE_ERROR,
    CODE_INVALID,
    CODE_TIMEOUT,
    OutboundMessage,
    Provider,
    ProviderError,
    ProviderSession,
    SendResult,
    http_error,
)
from tests.support.logs import raw_records


class Recorder(Provider):
    """A vendor whose client raises what the test hands it: the pipeline around it is real."""

    name = "recorder"
    channel = "sms"

    def classify(self, exc: BaseException) -> ProviderError | None:
        if isinstance(exc, ConnectionResetError):
            return ProviderError("reset", permanent=False, response_code=CODE_CONNECTION)
        return None


class RecorderSession(ProviderSession):
    def __init__(self, raises: BaseException | None) -> None:
        super().__init__(Recorder())
        self.raises = raises
        self.delivered: list[str] = []
        self.failures: list[BaseException] = []

    def deliver(self, message: OutboundMessage) -> SendResult:
        self.delivered.append(message.message_uid)
        if self.raises is not None:
            raise self.raises
        return SendResult(provider_message_id="id-1", response_code="201")


def outbound(to: str = "+12025550123") -> OutboundMessage:
    return OutboundMessage(
        message_uid="msg-1", channel="sms", to=to, subject="", text="hi", html="", request_id="r"
    )


def failures(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if r.getMessage() == "sms send failed"]


def test_it_refuses_a_message_without_recipient_before_delivering():
    session = RecorderSession(raises=None)

    with raw_records("delivery.providers") as records, pytest.raises(ProviderError) as caught:
        session.send(outbound(to=""))

    assert (caught.value.permanent, caught.value.response_code) == (True, CODE_INVALID)
    assert session.delivered == []
    assert len(failures(records)) == 1


def test_it_classifies_a_client_exception_through_the_vendor_table_and_logs_it_once():
    class Tracked(RecorderSession):
        def after_failure(self, exc: BaseException) -> None:
            self.failures.append(exc)

    reset = ConnectionResetError("reset by +12025550123")
    session = Tracked(raises=reset)

    with raw_records("delivery.providers") as records, pytest.raises(ProviderError) as caught:
        session.send(outbound())

    assert (caught.value.message, caught.value.permanent) == ("reset", False)
    assert caught.value.__cause__ is None  # the client's text (an address) does not travel
    assert session.failures == [reset]
    [failure] = failures(records)
    assert failure.response_code == CODE_CONNECTION


def test_it_counts_an_exception_the_vendor_does_not_know_as_transient():
    session = RecorderSession(raises=KeyError("sid"))

    with raw_records("delivery.providers") as records, pytest.raises(ProviderError) as caught:
        session.send(outbound())

    assert caught.value.permanent is False
    assert caught.value.response_code == CODE_ERROR
    assert caught.value.message == "unexpected KeyError from the provider"
    assert [r.exc_info is not None for r in records if r.levelno == logging.ERROR] == [True]
    assert len(failures(records)) == 1


def test_it_passes_on_a_vendors_own_verdict_unchanged():
    verdict = ProviderError("accepted no message", permanent=False, response_code=CODE_ERROR)
    session = RecorderSession(raises=verdict)

    with raw_records("delivery.providers") as records, pytest.raises(ProviderError) as caught:
        session.send(outbound())

    assert caught.value is verdict
    assert len(failures(records)) == 1


def test_it_returns_the_vendors_result_and_logs_nothing_on_success():
    with raw_records("delivery.providers") as records:
        result = RecorderSession(raises=None).send(outbound())

    assert result == SendResult(provider_message_id="id-1", response_code="201")
    assert failures(records) == []


@pytest.mark.parametrize(
    ("error", "permanent", "code", "retry_after"),
    [
        (HttpError("t", timed_out=True), False, CODE_TIMEOUT, None),
        (HttpError("c"), False, CODE_CONNECTION, None),
        (HttpError("r", status=429, retry_after=7.0), False, "429", 7.0),
        (HttpError("s", status=503), False, "503", None),
        (HttpError("b", status=400), True, "400", None),
        (HttpError("n", status=404), True, "404", None),
    ],
)
def test_it_classifies_http_failures(error, permanent, code, retry_after):
    verdict = http_error(error, vendor="helpdesk")

    assert (verdict.permanent, verdict.response_code, verdict.retry_after) == (
        permanent,
        code,
        retry_after,
    )


def test_it_names_the_vendor_code_and_its_meaning():
    verdict = http_error(
        HttpError("x", status=400), vendor="gateway", meaning="invalid number", code="21211"
    )

    assert verdict.message == "gateway answered 400: invalid number"
    assert verdict.response_code == "400:21211"
