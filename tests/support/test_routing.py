"""Routing-only, the runbook's first deploy: with the default flags (sends on, everything
else as installed) tags and team reach the helpdesk, and no reply does."""

from __future__ import annotations

from support.models import Ticket
from tests.delivery.conftest import run_pump
from tests.support.conftest import live, messages_of
from tests.support.helpdesk import Helpdesk


def test_it_sends_tags_and_team_and_no_reply_with_the_default_flags(
    helpdesk: Helpdesk, post_ticket
):
    live()
    response = post_ticket(ticket_id="T-1", subject="Where is my order?")
    assert response.status_code == 202

    run_pump()

    ticket = helpdesk.ticket("T-1")
    assert ticket.tags == ["order-status"]
    assert ticket.team == "Customer Care"
    assert ticket.comments == []
    messages = messages_of(response.json()["id"])
    assert messages["t_helpdesk_routing"].state == "sent"
    assert messages["t_order_status_ask_order_number"].state == "blocked"
    assert messages["t_order_status_ask_order_number"].last_error == "AUTOMATION_ENABLED is off"
    assert [(r.method, r.path) for r in helpdesk.writes] == [
        ("PUT", "/v1/tickets/T-1/add-tags"),
        ("PUT", "/v1/tickets/T-1"),
    ]
    assert {r.headers["x-richpanel-key"] for r in helpdesk.writes} == {helpdesk.api_key}
    assert Ticket.objects.get(ticket_id="T-1").intent == "order_status"


def test_it_routes_a_duplicate_ticket_event_once(helpdesk: Helpdesk, post_ticket):
    live()
    first = post_ticket(key="hd-evt-1", ticket_id="T-2")
    again = post_ticket(key="hd-evt-1", ticket_id="T-2")
    # The helpdesk re-sent the same ticket under a new delivery id.
    resent = post_ticket(key="hd-evt-2", ticket_id="T-2")
    assert (first.status_code, again.status_code, resent.status_code) == (202, 200, 202)
    assert again.json()["duplicate"] is True

    run_pump()

    assert [(r.method, r.path) for r in helpdesk.writes] == [
        ("PUT", "/v1/tickets/T-2/add-tags"),
        ("PUT", "/v1/tickets/T-2"),
    ]
    assert Ticket.objects.filter(ticket_id="T-2").count() == 1
    assert messages_of(resent.json()["id"]) == {}
