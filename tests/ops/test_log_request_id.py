"""Every line of a request carries its request id, lines between requests carry none, and
work bound to a request id (the workers) carries it too."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import include, path

from comcenter.lib.context import request_id_bound
from comcenter.lib.logging import JsonFormatter, RedactFilter, RequestIdFilter

log = logging.getLogger("tests.ops.request_id")


def _working(request: HttpRequest) -> HttpResponse:
    log.info("step one")
    logging.getLogger("some.library").warning("step two")
    return HttpResponse("ok")


urlpatterns = [path("working", _working), path("", include("comcenter.urls"))]
handler404 = "comcenter.lib.errors.handler404"


@pytest.fixture
def lines() -> Iterator[list[dict]]:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    collected: list[dict] = []
    yield collected
    root.removeHandler(handler)


def _read(lines: list[dict], handler_output: str) -> None:
    lines.extend(json.loads(line) for line in handler_output.splitlines())


def _output() -> str:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and isinstance(handler.stream, io.StringIO):
            return handler.stream.getvalue()
    raise AssertionError("test handler missing")


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_it_puts_the_request_id_on_every_line_of_a_request(
    client: Client, lines: list[dict]
) -> None:
    client.get("/working", HTTP_X_REQUEST_ID="req-lines-1")
    client.get("/no-such-page", HTTP_X_REQUEST_ID="req-lines-2")
    log.info("between requests")
    _read(lines, _output())
    by_message = {line["msg"]: line for line in lines}
    assert by_message["step one"]["request_id"] == "req-lines-1"
    assert by_message["step two"]["request_id"] == "req-lines-1"
    # Django's own line for the 404 is logged after the middleware returned.
    assert by_message["Not Found: /no-such-page"]["request_id"] == "req-lines-2"
    assert by_message["between requests"]["request_id"] == ""


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_it_generates_an_id_when_the_caller_sends_none_or_a_bad_one(
    client: Client, lines: list[dict]
) -> None:
    first = client.get("/working")
    second = client.get("/working", HTTP_X_REQUEST_ID="bad id with spaces\n")
    _read(lines, _output())
    ids = [line["request_id"] for line in lines if line["msg"] == "step one"]
    assert ids == [first["X-Request-ID"], second["X-Request-ID"]]
    assert len(set(ids)) == 2
    assert all(len(value) == 32 for value in ids)


def test_it_carries_the_id_into_work_bound_to_it(lines: list[dict]) -> None:
    with request_id_bound("req-worker-7"):
        logging.getLogger("delivery.batch").warning("provider failed")
    _read(lines, _output())
    (line,) = lines
    assert line["request_id"] == "req-worker-7"
    assert line["level"] == "WARNING"
