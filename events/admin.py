"""Operator console for events (read-only) and event types."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from comcenter.lib.admin import ReadOnlyAdmin
from events import services
from events.models import Event, EventType


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "uid",
        "event_type",
        "caller",
        "recipient_id",
        "ordering_key",
        "sequence",
        "status",
        "outbox_state",
        "received_at",
    )
    list_filter = ("status", "outbox_state", "event_type")
    search_fields = ("=uid", "=idempotency_key", "=request_id", "=recipient_id", "=ordering_key")
    date_hierarchy = "received_at"
    exclude = ("pending_token",)
    show_full_result_count = False


@admin.register(EventType)
class EventTypeAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "description", "created_at")
    search_fields = ("name",)

    def save_model(self, request: HttpRequest, obj: EventType, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        services.forget_event_types()
