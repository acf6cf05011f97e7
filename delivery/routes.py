"""Routes: an operator's rules from event type to template and channel, every change audited."""

from __future__ import annotations

from django.db import transaction
from django.db.models.functions import Now

from audit.services import audit_append
from delivery.models import Route

ROUTE_EDITABLE = ("event_type", "template_key", "channel", "enabled", "position", "description")


def route_ensure(
    *,
    event_type: str,
    template_key: str,
    channel: str,
    position: int = 0,
    enabled: bool = True,
    actor: str = "",
) -> Route:
    """The route for (event type, template, channel), created if missing (idempotent: an
    existing route keeps what operators changed)."""
    with transaction.atomic():
        route, created = Route.objects.get_or_create(
            event_type=event_type,
            template_key=template_key,
            channel=channel,
            defaults={"position": position, "enabled": enabled},
        )
        if created:
            audit_append(
                kind="route.created",
                actor=actor,
                data={
                    "route": route.pk,
                    "event_type": event_type,
                    "template": template_key,
                    "channel": channel,
                },
            )
    return route


def route_save(*, route: Route, actor: str, created: bool) -> Route:
    """Save an operator's edit of a route, audited (the admin's form calls this)."""
    with transaction.atomic():
        route.updated_at = Now()
        if created:
            route.save(force_insert=True)
        else:
            route.save(update_fields=[*ROUTE_EDITABLE, "updated_at"])
        route.refresh_from_db(fields=["updated_at"])
        audit_append(
            kind="route.created" if created else "route.changed",
            actor=actor,
            data={
                "route": route.pk,
                "event_type": route.event_type,
                "template": route.template_key,
                "channel": route.channel,
                "enabled": route.enabled,
                "position": route.position,
            },
        )
    return route


def route_delete(*, route: Route, actor: str) -> None:
    """Delete a route that never produced a message (one that did is protected: disable it)."""
    with transaction.atomic():
        audit_append(
            kind="route.deleted",
            actor=actor,
            data={
                "route": route.pk,
                "event_type": route.event_type,
                "template": route.template_key,
            },
        )
        route.delete()
