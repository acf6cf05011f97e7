"""Ticket bodies and customer details never reach the logs, on any path of a ticket
(intake, classification, routing, a failing helpdesk, a reply), read from the handler that
the settings configure — not one built for the test."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from tests.delivery.conftest import run_pump
from tests.support.conftest import automation_on, live, whitelist
from tests.support.helpdesk import Helpdesk

SUBJECT = "My blender explodes"
BODY = "The Zephyr-9000 sparks when I plug it in at 14 Elm Street"
EMAIL = "grace.hopper@example.org"
NAME = "Grace Hopper"
ORDER_STATUS = "held at customs"


@pytest.fixture
def stdout_log() -> Iterator[io.StringIO]:
    """The configured `stdout` handler of the root logger, writing into memory at DEBUG."""
    [handler] = [h for h in logging.getLogger().handlers if h.name == "stdout"]
    assert isinstance(handler, logging.StreamHandler)
    assert handler.filters, "the configured handler carries the redaction filter"
    buffer = io.StringIO()
    root = logging.getLogger()
    level = root.level
    previous = handler.setStream(buffer)
    root.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.setLevel(level)
        handler.setStream(previous)


def test_it_keeps_ticket_bodies_and_customer_details_out_of_the_logs(
    helpdesk: Helpdesk, post_ticket, stdout_log: io.StringIO
):
    live()
    automation_on()
    whitelist("t_technical_support_intake")
    customer = {"email": EMAIL, "name": NAME}
    orders = [{"number": "10023", "email": EMAIL, "status": ORDER_STATUS}]
    post_ticket(
        ticket_id="T-50",
        subject=SUBJECT,
        body=BODY + " error",
        customer=customer,
        linked_orders=orders,
    )
    post_ticket(subject=SUBJECT, body=BODY, customer={"email": "not-an-email"})  # a 400
    run_pump()
    helpdesk.respond(503)  # this write fails: a warning with the provider's answer
    post_ticket(subject=SUBJECT, body=BODY, customer=customer, linked_orders=orders)
    run_pump()

    text = stdout_log.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert any(line.get("msg") == "ticket classified" for line in lines)
    assert any(line.get("msg") == "helpdesk send failed" for line in lines)
    assert len(helpdesk.ticket("T-50").comments) == 1  # the reply went out too
    for secret in (SUBJECT, BODY, "Zephyr", EMAIL, NAME, ORDER_STATUS, "not-an-email"):
        assert secret not in text
