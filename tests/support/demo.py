"""The demo data with one event through the pipeline: messages, lineage rows and (dry-run)
outcomes to show on the admin screens."""

from __future__ import annotations

from django.core.management import call_command

from delivery.tasks import pump
from events.services import event_accept


def load_demo_traffic(*, key: str = "demo-1") -> None:
    call_command("load_demo", verbosity=0)
    event_accept(
        caller="sa:demo",
        payload={
            "event_type": "deadline_soon",
            "recipient": {"id": "s-1", "email": "a@example.org", "phone": "+12025550123"},
            "data": {"scholarship": "STEM Futures", "deadline": "2026-12-01"},
        },
        idempotency_key=key,
        request_id=f"req-{key}",
    )
    pump("demo")
