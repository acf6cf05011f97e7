"""Operator console for identity: service accounts (create, rotate the secret, revoke), and
the identity provider's keys (JwksState: which kids are known, when they were fetched, the
last fetch error, and a "fetch now" action)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers

from comcenter.lib.admin import ReadOnlyAdmin
from identity import services
from identity.jwks import jwks_fetch_now
from identity.models import SCOPES, JwksState, ServiceAccount


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
        return request.user.has_perm("identity.change_jwksstate")

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        if not settings.JWKS_URL:
            self.message_user(
                request,
                "JWKS_URL is not set: no identity provider is configured, so there are no keys "
                "to show. Service-account tokens work without one.",
                messages.INFO,
            )
        return super().changelist_view(request, extra_context)

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

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = ServiceAccountCreateForm
        return super().get_form(request, obj, change, **kwargs)

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
        return request.user.has_perm("identity.change_serviceaccount")

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("identity.change_serviceaccount")

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
        response = TemplateResponse(request, "identity/admin/secrets_once.html", context)
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
