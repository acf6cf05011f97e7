"""`manage.py load_demo`: demo service account, event types, templates and routes.

Idempotent: running it again changes nothing that exists (templates an operator edited keep
their edits). The demo account's secret comes from DEMO_CLIENT_SECRET (written to .env by
`make run`); without it an account is created once with a random secret, printed once."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from delivery.routes import route_ensure
from events.services import event_type_ensure
from identity.models import ServiceAccount
from identity.services import service_account_create, service_account_ensure
from support.demo import support_demo_load
from templates.models import Template
from templates.services import template_create

DEMO_TEMPLATES: list[dict[str, Any]] = [
    {
        "key": "deadline_soon_email",
        "channel": "email",
        "subject": "{{ scholarship }} closes on {{ deadline }}",
        "body": (
            "Hello,\n\nA reminder that applications for {{ scholarship }} close on "
            "{{ deadline }}. Finish yours before then.\n\n— The scholarships team"
        ),
        "html": (
            "<p>Hello,</p><p>A reminder that applications for <strong>{{ scholarship }}"
            "</strong> close on {{ deadline }}. Finish yours before then.</p>"
            "<p>— The scholarships team</p>"
        ),
    },
    {
        "key": "deadline_soon_sms",
        "channel": "sms",
        "body": "Reminder: {{ scholarship }} closes on {{ deadline }}.",
    },
    {
        "key": "new_match_email",
        "channel": "email",
        "subject": "New scholarship match: {{ scholarship }}",
        "body": (
            "Hello,\n\n{{ scholarship }} matches your profile. Applications close on "
            "{{ deadline }}.\n\n— The scholarships team"
        ),
    },
    {
        "key": "new_match_sms",
        "channel": "sms",
        "body": "New match: {{ scholarship }} (closes {{ deadline }}).",
    },
]

DEMO_ROUTES = [
    ("deadline_soon", "deadline_soon_email", "email"),
    ("deadline_soon", "deadline_soon_sms", "sms"),
    ("new_match", "new_match_email", "email"),
    ("new_match", "new_match_sms", "sms"),
]

DEMO_EVENT_TYPES = {
    "deadline_soon": "A scholarship deadline is near.",
    "new_match": "A new scholarship matches a student's profile.",
    "ticket.created": "A helpdesk ticket was opened (support routing).",
}


class Command(BaseCommand):
    help = "Load the demo service account, event types, templates and routes (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        for name, description in DEMO_EVENT_TYPES.items():
            event_type_ensure(name=name, description=description)
        created_templates = 0
        for spec in DEMO_TEMPLATES:
            if Template.objects.filter(key=spec["key"], locale="en").exists():
                continue
            template_create(
                **spec,
                locale="en",
                category="transactional",
                tier=0,
                enabled=True,
                whitelisted=True,
                actor="load_demo",
            )
            created_templates += 1
        for position, (event_type, template_key, channel) in enumerate(DEMO_ROUTES):
            route_ensure(
                event_type=event_type,
                template_key=template_key,
                channel=channel,
                position=position,
            )
        support = support_demo_load(actor="load_demo")
        self._demo_account()
        self.stdout.write(
            f"demo data loaded: {len(DEMO_EVENT_TYPES)} event types, "
            f"{created_templates} new templates, {len(DEMO_ROUTES)} routes; support routing: "
            f"{support['rules']} new rules, {support['templates']} new templates, "
            f"{support['routes']} routes"
        )

    def _demo_account(self) -> None:
        scopes = ["events:read", "events:write"]
        if settings.DEMO_CLIENT_SECRET:
            service_account_ensure(
                name="demo",
                client_id=settings.DEMO_CLIENT_ID,
                secret=settings.DEMO_CLIENT_SECRET,
                scopes=scopes,
                actor="load_demo",
            )
            self.stdout.write(
                f"demo service account: client id {settings.DEMO_CLIENT_ID} "
                "(secret: DEMO_CLIENT_SECRET in .env)"
            )
            return
        if ServiceAccount.objects.filter(name="demo").exists():
            return
        account, secret = service_account_create(name="demo", scopes=scopes, actor="load_demo")
        self.stdout.write(
            f"demo service account: client id {account.client_id}, secret {secret} (shown once)"
        )
