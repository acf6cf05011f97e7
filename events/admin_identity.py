"""Operator view of the identity provider's keys (JwksState): which kids are known, when
they were fetched, the last fetch error, and a "fetch now" action.

Registered by importing this module from events/admin.py."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from comcenter.lib.admin import ReadOnlyAdmin
from events.jwks import jwks_fetch_now
from events.models import JwksState


@admin.register(JwksState)
class JwksStateAdmin(ReadOnlyAdmin):
    list_display = ("id", "url", "key_ids", "last_attempt_at", "last_error", "fetched_at")
    search_fields = ("url",)
    exclude = ("jwks",)
    readonly_fields = ("url", "key_ids", "fetched_at", "last_attempt_at", "last_error")
    actions = ("fetch_now",)

    @admin.display(description="key ids")
    def key_ids(self, obj: JwksState) -> str:
        keys = obj.jwks.get("keys") if isinstance(obj.jwks, dict) else None
        if not isinstance(keys, list):
            return ""
        return ", ".join(str(k.get("kid", "?"))[:64] for k in keys if isinstance(k, dict))

    def has_fetch_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("events.change_jwksstate")

    @admin.action(description="Fetch the configured JWKS now", permissions=["fetch"])
    def fetch_now(self, request: HttpRequest, queryset: QuerySet[JwksState]) -> None:
        if jwks_fetch_now(actor=request.user.get_username()):
            self.message_user(request, "Fetched the JWKS; its keys are saved.")
        else:
            self.message_user(
                request,
                "The JWKS could not be fetched (or JWKS_URL is unset); see last error.",
                messages.WARNING,
            )
