"""Operator console for events (read-only) and event types."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
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
