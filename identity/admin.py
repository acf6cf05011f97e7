"""Operator console for identity: service accounts (create, rotate the secret, revoke), and
the identity provider's keys (JwksState: which kids are known, when they were fetched, the
last fetch error, and a "fetch now" action)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from comcenter.lib.admin import ReadOnlyAdmin
from identity import services
from identity.jwks import jwks_refresh
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

    @admin.action(description="Fetch the configured JWKS now")
    def fetch_now(self, request: HttpRequest, queryset: QuerySet[JwksState]) -> None:
        if jwks_refresh():
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
