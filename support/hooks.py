"""How `ticket.created` events go through the delivery pipeline (delivery/hooks.py).

Expansion classifies the ticket, stores it, and creates at most two messages on the
`helpdesk` channel, both in the event's lane (so they are dispatched in order, one at a time):
the routing write (tags and team, template `t_helpdesk_routing`) and the planned reply. The
reply's gates are read right before its send, in SPEC §10's order, and each evaluation is a
lineage row; the render context never carries an order unless the deterministic match held."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from audit.models import AuditRecord
from audit.services import audit_append, audit_build
from delivery.hooks import EventHooks
from delivery.models import Message, MessageState, Route
from events.models import Event
from flags.services import flag_is_on
from support.classifier import TicketFacts, classifier
from support.models import Ticket
from support.replies import (
    GATE_REASONS,
    ROUTING_TEMPLATE,
    GateInputs,
    first_closed,
    order_match,
    reply_gates,
    reply_plan,
)
from templates.models import Channel, Template

log = logging.getLogger(__name__)


def template_tiers(keys: set[str]) -> dict[str, int]:
    """The tier of each helpdesk template among `keys` that exists."""
    return dict(
        Template.objects.filter(key__in=keys, channel=Channel.HELPDESK).values_list("key", "tier")
    )


def _note(event: Event, kind: str, data: dict[str, Any]) -> AuditRecord:
    return audit_build(
        kind=kind,
        request_id=event.request_id,
        event_uid=event.uid,
        recipient_id=event.recipient_id,
        actor="support",
        data=data,
    )


class TicketHooks(EventHooks):
    def plan(
        self, *, event: Event, routes: list[Route]
    ) -> tuple[list[tuple[Route, str]], list[AuditRecord]]:
        data = event.data if isinstance(event.data, dict) else {}
        ticket_id = str(data.get("ticket_id") or "")
        # Expansion runs under its lock, one worker at a time, so this check cannot race
        # another expansion; the unique constraint is the backstop.
        if Ticket.objects.filter(caller=event.caller, ticket_id=ticket_id).exists():
            return [], [_note(event, "support.duplicate_ticket", {"ticket_id": ticket_id})]
        facts = TicketFacts.from_data(data)
        found = classifier().classify(facts)
        keys = {found.reply_template} | {r.template_key for r in routes}
        plan = reply_plan(classification=found, facts=facts, tiers=template_tiers(keys))
        with transaction.atomic():
            Ticket.objects.create(
                event=event,
                caller=event.caller,
                ticket_id=ticket_id,
                channel=facts.channel,
                intent=found.intent,
                rule_id=found.rule_id,
                rule_name=found.rule_name,
                tags=found.tags,
                team=found.team,
                reply_template=plan.template,
                reply_tier=plan.tier,
                order_match=plan.match.matched if plan.match else None,
                matched_order=plan.match.number if plan.match and plan.match.matched else "",
            )
        log.info(
            "ticket classified",
            extra={
                "request_id": event.request_id,
                "ticket_id": ticket_id,
                "intent": found.intent,
                "rule": found.rule_name,
                "reply_template": plan.template,
            },
        )
        notes = [
            _note(
                event,
                "support.classified",
                {
                    "ticket_id": ticket_id,
                    "intent": found.intent,
                    "rule": found.rule_name or None,
                    "tags": found.tags,
                    "team": found.team,
                    **plan.lineage(),
                },
            )
        ]
        by_key = {r.template_key: r for r in routes if r.channel == Channel.HELPDESK}
        targets: list[tuple[Route, str]] = []
        for key in filter(None, (ROUTING_TEMPLATE, plan.template)):
            if key in by_key:
                targets.append((by_key[key], ticket_id))
            else:
                notes.append(_note(event, "support.no_route", {"template": key}))
        return targets, notes

    def gate(self, *, message: Message, template: Template) -> tuple[str, str] | None:
        if message.template_key == ROUTING_TEMPLATE:
            return None
        ticket = Ticket.objects.filter(event_id=message.event_id).only("order_match").first()
        inputs = GateInputs(
            tier=template.tier,
            whitelisted=template.whitelisted,
            enabled=template.enabled,
            order_matched=bool(ticket and ticket.order_match),
        )
        flags = {name: flag_is_on(name) for name in ("AUTOMATION_ENABLED", "SAFE_MODE")}
        gates = reply_gates(inputs, flags)
        closed = first_closed(gates)
        audit_append(
            kind="support.reply_gates",
            request_id=message.event.request_id,
            event_uid=message.event.uid,
            message_uid=message.uid,
            recipient_id=message.recipient_id,
            actor="support",
            data={
                "template": template.key,
                "tier": template.tier,
                "gates": gates,
                "closed": closed,
            },
        )
        if closed is None:
            return None
        return MessageState.BLOCKED, GATE_REASONS[closed]

    def context(self, *, message: Message) -> dict[str, Any]:
        ticket = Ticket.objects.filter(event_id=message.event_id).first()
        data = message.event.data if isinstance(message.event.data, dict) else {}
        customer = data.get("customer")
        name = customer.get("name") if isinstance(customer, dict) else ""
        order: dict[str, Any] | None = None
        template = message.template
        if (
            ticket is not None
            and ticket.order_match
            and template is not None
            and template.tier >= 2
        ):
            matched = order_match(TicketFacts.from_data(data)).order
            order = dict(matched) if matched is not None else None
        return {
            # The raw linked orders never reach a template: only the matched one, as `order`.
            "linked_orders": [],
            "order": order,
            "customer": {"name": str(name or "")},
            "ticket": {
                "id": ticket.ticket_id if ticket else "",
                "intent": ticket.intent if ticket else "",
            },
        }
