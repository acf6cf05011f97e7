"""Demo data of support routing (loaded by `manage.py load_demo`): a rule per intent, the
routing template, the tier-1 and tier-2 reply templates of SPEC §10 — reply templates
**not** whitelisted, as the runbook's first deploy requires — and the routes of
`ticket.created` to them. Idempotent: what exists is left as operators changed it."""

from __future__ import annotations

from typing import Any

from delivery.routes import route_ensure
from support.models import Intent, Rule
from support.replies import ROUTING_TEMPLATE
from support.services import rule_create
from templates.models import Channel, Template
from templates.services import template_create

DEMO_RULES: list[dict[str, Any]] = [
    {
        "name": "Delivered, not received",
        "priority": 10,
        "keywords": "not received, never arrived, never received, did not arrive, "
        "didn't arrive, hasn't arrived, no llegó, jamais reçu",
        "intent": Intent.DELIVERED_NOT_RECEIVED,
        "tags": "delivery-issue, dnr",
        "team": "Logistics",
        "reply_template": "t_delivered_not_received_intake",
    },
    {
        "name": "Missing items",
        "priority": 20,
        "keywords": "missing, incomplete order, item short, manque, falta",
        "intent": Intent.MISSING_ITEMS,
        "tags": "missing-items",
        "team": "Fulfilment",
        "reply_template": "t_missing_items_intake",
    },
    {
        "name": "Returns and refunds",
        "priority": 30,
        "keywords": "return, returns, refund, exchange, send back, devolución, retour",
        "intent": Intent.RETURNS,
        "tags": "returns",
        "team": "Returns",
    },
    {
        "name": "Shipping delay",
        "priority": 35,
        "keywords": "delayed, delay, late, still waiting",
        "intent": Intent.ORDER_STATUS,
        "tags": "order-status, shipping-delay",
        "team": "Customer Care",
        "reply_template": "t_shipping_delay_verified",
    },
    {
        "name": "Order status",
        "priority": 40,
        "keywords": "where is my order, order status, track, tracking, shipped, wismo, "
        "dónde está mi pedido",
        "intent": Intent.ORDER_STATUS,
        "tags": "order-status",
        "team": "Customer Care",
        "reply_template": "t_order_status_verified",
    },
    {
        "name": "Technical support",
        "priority": 50,
        "keywords": "error, bug, crash, crashes, login, log in, password, app, website, "
        "not working, broken",
        "intent": Intent.TECHNICAL_SUPPORT,
        "tags": "tech",
        "team": "Tech Support",
        "reply_template": "t_technical_support_intake",
    },
    {
        "name": "Sales enquiries",
        "priority": 60,
        "keywords": "price, pricing, quote, discount, wholesale, bulk order, buy, purchase",
        "intent": Intent.SALES,
        "tags": "sales-lead",
        "team": "Sales",
    },
    {
        # A field condition alone: social-media tickets nothing above matched.
        "name": "Social media, unmatched",
        "priority": 90,
        "channels": "instagram, facebook",
        "intent": Intent.OTHER,
        "tags": "social, needs-triage",
        "team": "Social Media",
    },
]

GREETING = "Hi {{ customer.name|default:'there' }},\n\n"
SIGN_OFF = "\n\n— The support team"

DEMO_TEMPLATES: list[dict[str, Any]] = [
    {
        "key": ROUTING_TEMPLATE,
        "tier": 0,
        "whitelisted": True,
        "description": "The routing write (tags and team) of every ticket; not a reply.",
        "body": "Ticket {{ ticket.id }} routed as {{ ticket.intent }}.",
    },
    {
        "key": "t_order_status_ask_order_number",
        "tier": 1,
        "body": GREETING + "Thanks for getting in touch. Could you reply with your order "
        "number (it looks like 10023, in your confirmation email)? Then we can look up "
        "your order straight away." + SIGN_OFF,
    },
    {
        "key": "t_delivered_not_received_intake",
        "tier": 1,
        "body": GREETING + "We are sorry your parcel has not reached you. To start a trace, "
        "please reply with: your order number, the delivery address, and whether a "
        "neighbour or safe place could have taken it in." + SIGN_OFF,
    },
    {
        "key": "t_missing_items_intake",
        "tier": 1,
        "body": GREETING + "We are sorry something is missing. Please reply with your order "
        "number, which items are missing, and a photo of the parcel's contents and "
        "packing slip." + SIGN_OFF,
    },
    {
        "key": "t_technical_support_intake",
        "tier": 1,
        "body": GREETING + "Thanks for reporting this. To help us reproduce it, please reply "
        "with the device and browser or app version you use, what you did, and the exact "
        "error message you saw." + SIGN_OFF,
    },
    {
        "key": "t_order_status_verified",
        "tier": 2,
        "body": GREETING + "Your order {{ order.number }} is {{ order.status }}"
        "{% if order.carrier %}, with {{ order.carrier }}{% endif %}."
        "{% if order.tracking_url %} You can follow it here: {{ order.tracking_url }}"
        "{% endif %}" + SIGN_OFF,
    },
    {
        "key": "t_shipping_delay_verified",
        "tier": 2,
        "body": GREETING + "We checked order {{ order.number }}: it is {{ order.status }}"
        "{% if order.carrier %} with {{ order.carrier }}{% endif %}. We are sorry for the "
        "wait.{% if order.tracking_url %} The latest news: {{ order.tracking_url }}"
        "{% endif %}" + SIGN_OFF,
    },
]


def support_demo_load(*, actor: str) -> dict[str, int]:
    """Create what is missing; returns how many rules, templates and routes are new."""
    created = {"rules": 0, "templates": 0}
    for spec in DEMO_RULES:
        if not Rule.objects.filter(name=spec["name"]).exists():
            rule_create(**spec, actor=actor)
            created["rules"] += 1
    for spec in DEMO_TEMPLATES:
        if Template.objects.filter(key=spec["key"], locale="en").exists():
            continue
        template_create(
            channel=Channel.HELPDESK,
            locale="en",
            category="transactional",
            enabled=True,
            whitelisted=spec.get("whitelisted", False),
            sample_data=SAMPLE_TICKET,
            actor=actor,
            **{k: v for k, v in spec.items() if k != "whitelisted"},
        )
        created["templates"] += 1
    for position, spec in enumerate(DEMO_TEMPLATES):
        route_ensure(
            event_type="ticket.created",
            template_key=spec["key"],
            channel=Channel.HELPDESK,
            position=position,
            actor=actor,
        )
    created["routes"] = len(DEMO_TEMPLATES)
    return created


# The admin preview's data: what the hooks put in a reply's context.
SAMPLE_TICKET: dict[str, Any] = {
    "customer": {"name": "Ada"},
    "ticket": {"id": "T-1001", "intent": "order_status"},
    "order": {
        "number": "10023",
        "status": "shipped",
        "carrier": "UPS",
        "tracking_url": "https://tracking.example.org/10023",
    },
}
