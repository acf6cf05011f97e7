"""Tiered auto-replies (SPEC §10): which reply a ticket gets, and the gates before it goes.

Both are plain functions of their inputs so that the pipeline (support/hooks.py) and the
smoke-test pack (support/smoke.py) decide with the same code: the pack passes the case's
flags and whitelist, the pipeline the live ones."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from support.classifier import Classification, TicketFacts

ROUTING_TEMPLATE = "t_helpdesk_routing"
# Where a tier-2 reply falls back to when the order match does not hold: the tier-1 question
# for the order number, which discloses nothing.
TIER2_FALLBACK_TEMPLATE = "t_order_status_ask_order_number"
# The gates of SPEC §10, in its order; the first closed one names the block.
GATES = ("AUTOMATION_ENABLED", "SAFE_MODE", "whitelisted", "enabled", "tier")


@dataclass(frozen=True)
class OrderMatch:
    matched: bool
    number: str = ""
    reason: str = ""
    order: Mapping[str, Any] | None = None

    def lineage(self) -> dict[str, Any]:
        # The order's number only: its status, carrier and email are customer data.
        return {"matched": self.matched, "number": self.number, "reason": self.reason}


def order_match(facts: TicketFacts) -> OrderMatch:
    """The deterministic match: exactly one linked order whose number equals the ticket's
    order number (or the one number written in the subject or body) and whose email equals
    the customer's, both compared case-insensitively."""
    number = facts.order_number.strip()
    if not number:
        found = facts.order_numbers_in_text()
        if not found:
            return OrderMatch(False, reason="no order number")
        if len(found) > 1:
            return OrderMatch(False, reason="several order numbers in the text")
        number = found.pop()
    email = facts.customer_email.strip().casefold()
    same_number = [
        o
        for o in facts.linked_orders
        if str(o.get("number", "")).strip().casefold() == number.casefold()
    ]
    if not same_number:
        return OrderMatch(False, number, "no linked order has this number")
    matches = [o for o in same_number if str(o.get("email", "")).strip().casefold() == email]
    if not matches:
        return OrderMatch(False, number, "the order's email is not the customer's")
    if len(matches) > 1:
        return OrderMatch(False, number, "several linked orders have this number")
    return OrderMatch(True, number, "one linked order, same email", matches[0])


@dataclass(frozen=True)
class ReplyPlan:
    template: str  # empty: no reply
    tier: int | None
    match: OrderMatch | None  # tier 2 only

    def lineage(self) -> dict[str, Any]:
        data: dict[str, Any] = {"reply_template": self.template, "tier": self.tier}
        if self.match is not None:
            data["order_match"] = self.match.lineage()
        return data


def reply_plan(
    *, classification: Classification, facts: TicketFacts, tiers: Mapping[str, int]
) -> ReplyPlan:
    """The reply for a classified ticket. `tiers` gives each existing template's tier; a
    tier-2 template without a deterministic order match becomes the tier-1 ask template."""
    key = classification.reply_template
    if not key or key not in tiers:
        return ReplyPlan("", None, None)
    if tiers[key] < 2:
        return ReplyPlan(key, tiers[key], None)
    match = order_match(facts)
    if match.matched:
        return ReplyPlan(key, tiers[key], match)
    fallback = TIER2_FALLBACK_TEMPLATE
    return ReplyPlan(fallback if fallback in tiers else "", tiers.get(fallback), match)


@dataclass(frozen=True)
class GateInputs:
    tier: int
    whitelisted: bool
    enabled: bool
    order_matched: bool


def reply_gates(inputs: GateInputs, flags: Mapping[str, bool]) -> dict[str, bool]:
    """Each gate of SPEC §10, open (True) or closed, in order."""
    return {
        "AUTOMATION_ENABLED": bool(flags["AUTOMATION_ENABLED"]),
        "SAFE_MODE": not flags["SAFE_MODE"],
        "whitelisted": inputs.whitelisted,
        "enabled": inputs.enabled,
        "tier": inputs.tier < 2 or inputs.order_matched,
    }


GATE_REASONS = {
    "AUTOMATION_ENABLED": "AUTOMATION_ENABLED is off",
    "SAFE_MODE": "SAFE_MODE is on",
    "whitelisted": "template not whitelisted",
    "enabled": "template disabled",
    "tier": "tier 2 needs a deterministic order match",
}


def first_closed(gates: Mapping[str, bool]) -> str | None:
    """The first closed gate's name, or None when every gate is open."""
    return next((name for name in GATES if not gates[name]), None)
