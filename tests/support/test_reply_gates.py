"""Tiered auto-replies: the gates of SPEC §10 each block a reply on their own; with every
gate open a tier-1 reply is posted; tier 2 discloses the order only on a deterministic match
and otherwise asks for the order number."""

from __future__ import annotations

import pytest

from audit.models import AuditRecord
from delivery.outbox import outbox_consume
from support.models import Ticket
from tests.delivery.conftest import run_pump
from tests.support.conftest import (
    CUSTOMER,
    automation_on,
    disable,
    live,
    messages_of,
    set_flag,
    whitelist,
)
from tests.support.helpdesk import Helpdesk

TIER1 = "t_technical_support_intake"
ASK = "t_order_status_ask_order_number"
VERIFIED = "t_order_status_verified"
TECH_TICKET = {"subject": "The app shows an error", "body": "Login fails with error 500."}


def open_every_gate() -> None:
    live()
    automation_on()
    whitelist(TIER1, ASK, VERIFIED)


@pytest.mark.parametrize(
    ("close", "reason"),
    [
        (lambda: set_flag("AUTOMATION_ENABLED", False), "AUTOMATION_ENABLED is off"),
        (lambda: set_flag("SAFE_MODE", True), "SAFE_MODE is on"),
        (lambda: whitelist(TIER1, value=False), "template not whitelisted"),
        (lambda: disable(TIER1), "template disabled"),
    ],
    ids=["automation-off", "safe-mode-on", "not-whitelisted", "disabled"],
)
def test_it_blocks_the_reply_when_one_gate_alone_is_closed(
    helpdesk: Helpdesk, post_ticket, close, reason
):
    open_every_gate()
    close()
    response = post_ticket(ticket_id="T-9", **TECH_TICKET)

    run_pump()

    reply = messages_of(response.json()["id"])[TIER1]
    assert (reply.state, reply.last_error) == ("blocked", reason)
    assert helpdesk.ticket("T-9").comments == []
    assert helpdesk.ticket("T-9").team == "Tech Support"  # routing goes on regardless
    [gates] = AuditRecord.objects.filter(kind="support.reply_gates", message_uid=reply.uid)
    assert list(gates.data["gates"].values()).count(False) == 1
    assert gates.data["closed"] is not None


def test_it_posts_the_tier_1_reply_when_every_gate_is_open(helpdesk: Helpdesk, post_ticket):
    open_every_gate()
    response = post_ticket(ticket_id="T-10", **TECH_TICKET)

    run_pump()

    [comment] = helpdesk.ticket("T-10").comments
    assert comment.startswith("Hi Ada,")
    assert "exact error message" in comment
    [post] = [r for r in helpdesk.writes if r.path.endswith("/comments")]
    assert post.body == {"comment": {"sender_type": "operator", "body": comment, "public": True}}
    reply = messages_of(response.json()["id"])[TIER1]
    assert reply.state == "sent"
    assert post.headers["Idempotency-Key"] == str(reply.uid)
    # Ordered per ticket: the routing writes came first.
    assert [r.path for r in helpdesk.writes][-1] == "/v1/tickets/T-10/comments"
    [gates] = AuditRecord.objects.filter(kind="support.reply_gates", message_uid=reply.uid)
    assert gates.data["closed"] is None
    assert all(gates.data["gates"].values())


ORDER = {
    "number": "10023",
    "email": CUSTOMER.upper(),
    "status": "out for delivery",
    "carrier": "UPS",
    "tracking_url": "https://tracking.example.org/10023",
}


def test_it_discloses_the_order_status_on_a_deterministic_match(helpdesk: Helpdesk, post_ticket):
    open_every_gate()
    response = post_ticket(
        ticket_id="T-11",
        subject="Where is my order?",
        body="Any news on order #10023?",
        linked_orders=[ORDER, {**ORDER, "number": "10099", "status": "delivered"}],
    )

    run_pump()

    [comment] = helpdesk.ticket("T-11").comments
    assert "Your order 10023 is out for delivery, with UPS." in comment
    assert "https://tracking.example.org/10023" in comment
    assert "10099" not in comment
    ticket = Ticket.objects.get(ticket_id="T-11")
    assert (ticket.reply_template, ticket.reply_tier, ticket.order_match) == (VERIFIED, 2, True)
    assert messages_of(response.json()["id"])[VERIFIED].state == "sent"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (
            {"order_number": "10023", "linked_orders": [{**ORDER, "email": "x@example.org"}]},
            "the order's email is not the customer's",
        ),
        ({"order_number": "10024", "linked_orders": [ORDER]}, "no linked order has this number"),
        ({"linked_orders": [ORDER]}, "no order number"),
    ],
    ids=["email-mismatch", "number-mismatch", "no-number"],
)
def test_it_sends_the_ask_template_without_a_match_and_no_order_detail(
    helpdesk: Helpdesk, post_ticket, fields, reason
):
    open_every_gate()
    response = post_ticket(ticket_id="T-12", subject="Order status please", body="Hi", **fields)

    run_pump()

    [comment] = helpdesk.ticket("T-12").comments
    assert "Could you reply with your order number" in comment
    for detail in ("out for delivery", "UPS", "tracking.example.org"):
        assert detail not in comment
    messages = messages_of(response.json()["id"])
    assert VERIFIED not in messages
    assert messages[ASK].state == "sent"
    [classified] = AuditRecord.objects.filter(
        kind="support.classified", event_uid=response.json()["id"]
    )
    assert classified.data["order_match"] == {
        "matched": False,
        "number": fields.get("order_number", ""),
        "reason": reason,
    }
    assert classified.data["reply_template"] == ASK


def test_it_blocks_a_tier_2_reply_at_send_time_without_a_match(helpdesk: Helpdesk, post_ticket):
    open_every_gate()
    response = post_ticket(
        ticket_id="T-13", subject="Order status", order_number="10023", linked_orders=[ORDER]
    )
    outbox_consume()  # classified with a match, nothing dispatched yet
    # The match no longer holds when the reply is about to go (e.g. an operator corrected
    # the ticket): the tier gate, read right before the send, stops it.
    Ticket.objects.filter(ticket_id="T-13").update(order_match=False)

    run_pump()

    reply = messages_of(response.json()["id"])[VERIFIED]
    assert (reply.state, reply.last_error) == (
        "blocked",
        "tier 2 needs a deterministic order match",
    )
    assert helpdesk.ticket("T-13").comments == []
