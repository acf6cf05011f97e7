"""Operator console for events (read-only) and service accounts."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html

from comcenter.lib.admin import ReadOnlyAdmin, short_link, state_badge
from events import admin_identity, services
from events.models import SCOPES, Event, EventType, ServiceAccount

# The identity provider's key state lives in its own module; importing it registers it.
_ = admin_identity


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

    def save_model(self, request: HttpRequest, obj: EventType, form: Any, change: bool) -> None:
        services.event_type_save(event_type=obj, actor=request.user.get_username())

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

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # An account's page is read-only (no Save buttons that do nothing): its only changes
        # are the rotate and revoke actions, which check their own permissions.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: the lineage keeps naming the client

    def has_rotate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("events.change_serviceaccount")

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("events.change_serviceaccount")

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            return
        account, secret = services.service_account_create(
            name=form.cleaned_data["name"],
            scopes=list(form.cleaned_data["scopes"]),
            actor=request.user.get_username(),
        )
        obj.pk = account.pk
        # Kept on the request only, for response_add to show once; only its hash is stored.
        request.new_secrets = [(account, secret)]  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: Any, post_url_continue: Any = None) -> Any:
        return self._secrets_page(request, "Service account created", request.new_secrets)  # type: ignore[attr-defined]

    def _secrets_page(
        self, request: HttpRequest, title: str, secrets: list[tuple[ServiceAccount, str]]
    ) -> TemplateResponse:
        """The new secrets on a page of their own, never in the message storage (a cookie
        with the default settings: signed, not encrypted) and never cached."""
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.model._meta,
            "secrets": secrets,
        }
        response = TemplateResponse(request, "events/admin/secrets_once.html", context)
        add_never_cache_headers(response)
        return response

    @admin.action(description="Rotate the secret of the selected accounts", permissions=["rotate"])
    def rotate_secret(
        self, request: HttpRequest, queryset: QuerySet[ServiceAccount]
    ) -> TemplateResponse:
        actor = request.user.get_username()
        secrets = [
            (account, services.service_account_rotate_secret(account=account, actor=actor))
            for account in queryset.filter(is_active=True)
        ]
        return self._secrets_page(request, f"Rotated {len(secrets)} secret(s)", secrets)

    @admin.action(description="Revoke the selected accounts", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ServiceAccount]) -> None:
        count = 0
        for account in queryset.filter(is_active=True):
            services.service_account_revoke(account=account, actor=request.user.get_username())
            count += 1
        self.message_user(request, f"Revoked {count} account(s).")
