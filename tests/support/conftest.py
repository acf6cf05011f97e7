"""Fixtures of the support-routing tests: the demo rules, templates and routes, tickets
posted through the real intake API, and the flags and whitelist of each rollout step."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from delivery.models import Message
from flags.services import flag_set
from support.demo import support_demo_load
from templates.models import Template
from templates.services import template_set_enabled, template_set_whitelisted
from tests.conftest import Actor

_tickets = itertools.count(1001)

CUSTOMER = "ada.lovelace@example.org"


def set_flag(name: str, value: bool) -> None:
    flag_set(name=name, value=value, actor="test", reason="test setup", source="api")


def whitelist(*keys: str, value: bool = True) -> None:
    for template in Template.objects.filter(key__in=keys):
        template_set_whitelisted(template=template, value=value, actor="test")


def disable(*keys: str) -> None:
    for template in Template.objects.filter(key__in=keys):
        template_set_enabled(template=template, value=False, actor="test")


def live() -> None:
    """Writes leave for the loopback helpdesk; the rate limit is off."""
    set_flag("DISABLE_SEND", False)
    set_flag("RATE_LIMIT_ENABLED", False)


def automation_on() -> None:
    """The runbook's tier-1 step: automation on, safe mode off."""
    set_flag("AUTOMATION_ENABLED", True)
    set_flag("SAFE_MODE", False)


def ticket_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "ticket_id": f"T-{next(_tickets)}",
        "subject": "Where is my order?",
        "body": "Hello, I ordered last week and would like to know where it is.",
        "channel": "email",
        "customer": {"email": CUSTOMER, "name": "Ada"},
    }
    data.update(overrides)
    return data


def ticket_event(key: str | None = None, **data: Any) -> dict[str, Any]:
    body = ticket_data(**data)
    return {
        "event_type": "ticket.created",
        "idempotency_key": key or f"helpdesk:{body['ticket_id']}",
        "ordering_key": f"ticket-{body['ticket_id']}",
        "recipient": {"id": "customer-7", "email": CUSTOMER},
        "data": body,
    }


def messages_of(event_id: str) -> dict[str, Message]:
    return {m.template_key: m for m in Message.objects.filter(event__uid=event_id)}


@pytest.fixture
def support_demo(db: Any, event_types: list[str]) -> None:
    support_demo_load(actor="test")


@pytest.fixture
def post_ticket(alice: Actor, support_demo: None) -> Callable[..., Any]:
    """Post a ticket.created event through the API; returns the response (202 expected)."""

    def post(key: str | None = None, **data: Any) -> Any:
        return alice.post_event(ticket_event(key, **data))

    return post
