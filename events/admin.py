"""Operator console for events (read-only) and event types."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from comcenter.lib.admin import ReadOnlyAdmin, short_link, state_badge
from events import services
from events.models import Event, EventType


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "status_badge",
        "short_uid",
        "event_type",
        "caller",
        "recipient_id",
        "ordering_key",
        "sequence",
        "outbox_state",
        "received_at",
    )
    list_filter = ("status", "outbox_state", "event_type")
    search_fields = ("=uid", "=idempotency_key", "=request_id", "=recipient_id", "=ordering_key")
    search_help_text = "An event id, idempotency key, request id, recipient id or ordering key."
    ordering = ("-id",)
    date_hierarchy = "received_at"
    exclude = ("pending_token",)
    readonly_fields = ("related",)
    show_full_result_count = False

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Event) -> str:
        return state_badge(obj.status)

    @admin.display(description="id", ordering="uid")
    def short_uid(self, obj: Event) -> str:
        return short_link(reverse("admin:events_event_change", args=[obj.pk]), obj.uid)

    @admin.display(description="messages and lineage")
    def related(self, obj: Event) -> str:
        # By URL, not by model: events knows nothing of delivery's tables.
        return format_html(
            '<a href="{}?q={}" id="event-messages">messages of this event</a> · '
            '<a href="{}?q={}" id="event-lineage">its lineage</a>',
            reverse("admin:delivery_message_changelist"),
            obj.uid,
            reverse("admin:audit_auditrecord_changelist"),
            obj.uid,
        )


@admin.register(EventType)
class EventTypeAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "description", "created_at")
    search_fields = ("name",)
    fields = ("name", "description")  # created_at comes from the database clock

    def save_model(self, request: HttpRequest, obj: EventType, form: Any, change: bool) -> None:
        services.event_type_save(
            event_type=obj, actor=request.user.get_username(), created=not change
        )

    def delete_model(self, request: HttpRequest, obj: EventType) -> None:
        services.event_type_delete(event_type=obj, actor=request.user.get_username())

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[EventType]) -> None:
        for event_type in queryset:
            services.event_type_delete(event_type=event_type, actor=request.user.get_username())
