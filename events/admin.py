"""Operator console for events (read-only) and service accounts."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from comcenter.lib.admin import ReadOnlyAdmin
from events import admin_identity, services
from events.models import SCOPES, Event, EventType, ServiceAccount

# The identity provider's key state lives in its own module; importing it registers it.
_ = admin_identity


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


class ServiceAccountCreateForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=[(s, s) for s in SCOPES], widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = ServiceAccount
        fields = ("name",)


@admin.register(ServiceAccount)
class ServiceAccountAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "client_id", "scopes", "created_at", "rotated_at", "is_active")
    list_filter = ("is_active",)
    search_fields = ("name", "=client_id")
    readonly_fields = ("client_id", "scopes", "created_at", "rotated_at", "revoked_at", "is_active")
    actions = ("rotate_secret", "revoke")

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = ServiceAccountCreateForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ("name", "scopes")
        return ("name", *self.readonly_fields)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else ("name", *self.readonly_fields)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: the lineage keeps naming the client

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            return
        account, secret = services.service_account_create(
            name=form.cleaned_data["name"],
            scopes=list(form.cleaned_data["scopes"]),
            actor=request.user.get_username(),
        )
        obj.pk = account.pk
        # Shown once; only its hash is stored.
        self.message_user(
            request,
            f"Client id {account.client_id}, secret {secret} — copy it now, it is not shown again.",
            messages.WARNING,
        )

    @admin.action(description="Rotate the secret of the selected accounts")
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[ServiceAccount]) -> None:
        lines = []
        for account in queryset.filter(is_active=True):
            secret = services.service_account_rotate_secret(
                account=account, actor=request.user.get_username()
            )
            lines.append(f"{account.client_id}: {secret}")
        self.message_user(
            request,
            f"Rotated {len(lines)} secret(s); copy them now, they are not shown again. "
            + "; ".join(lines),
            messages.WARNING,
        )

    @admin.action(description="Revoke the selected accounts")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ServiceAccount]) -> None:
        count = 0
        for account in queryset.filter(is_active=True):
            services.service_account_revoke(account=account, actor=request.user.get_username())
            count += 1
        self.message_user(request, f"Revoked {count} account(s).")
