"""The support numbers the dashboard shows: tickets by intent, replies by template and tier,
replies blocked by gate, tier-2 match/no-match, helpdesk 429s and errors."""

from __future__ import annotations

from support.selectors import support_metrics
from tests.delivery.conftest import run_pump
from tests.support.conftest import CUSTOMER, automation_on, live, whitelist
from tests.support.helpdesk import Helpdesk

ORDER = {"number": "10023", "email": CUSTOMER, "status": "shipped"}


def test_it_counts_tickets_replies_blocks_matches_and_errors(helpdesk: Helpdesk, post_ticket):
    live()
    automation_on()
    whitelist("t_technical_support_intake", "t_order_status_verified")
    post_ticket(subject="The app crashes")  # tier 1: sent
    post_ticket(subject="Where is my order?", order_number="10023", linked_orders=[ORDER])
    # No match: the ask template, not whitelisted, is blocked.
    post_ticket(subject="Where is my order?", order_number="10024", linked_orders=[ORDER])
    post_ticket(subject="Refund please")  # no reply template
    run_pump()
    helpdesk.respond(429, {"Retry-After": "60"})
    helpdesk.respond(500)
    post_ticket(subject="Hello")
    post_ticket(subject="Hello again")
    run_pump()

    metrics = support_metrics()

    assert metrics["tickets_by_intent"] == {
        "order_status": 2,
        "other": 2,
        "returns": 1,
        "technical_support": 1,
    }
    assert metrics["replies"] == [
        {"template": "t_order_status_verified", "tier": 2, "sent": 1, "dry_run": 0},
        {"template": "t_technical_support_intake", "tier": 1, "sent": 1, "dry_run": 0},
    ]
    assert metrics["replies_blocked_by_gate"] == {"template not whitelisted": 1}
    assert metrics["tier2"] == {"match": 1, "no_match": 1}
    assert metrics["helpdesk_errors"] == {"429": 1, "500": 1}
    assert metrics["helpdesk_429s"] == 1
