"""Operator console for flags: every flag with its effective value and source, changed by
POST with a required reason; the change log is read-only.

The flag list is not the `Flag` table: a flag without an operator row still exists (with its
environment or default value), so the list is built from `flag_states()` and a custom page
replaces the changelist. Editing a row directly is not offered: every change goes through
`flag_set`, which records who, when, why and the effective value."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from comcenter.lib.admin import ReadOnlyAdmin
from flags.models import Flag, FlagChange, FlagSource
from flags.registry import FLAGS
from flags.services import REASON_MAX_LENGTH, flag_set, flag_states


class FlagChangeForm(forms.Form):
    name = forms.ChoiceField(choices=[(name, name) for name in FLAGS])
    value = forms.ChoiceField(choices=[("on", "on"), ("off", "off")])
    reason = forms.CharField(max_length=REASON_MAX_LENGTH, strip=True)


@admin.register(Flag)
class FlagAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # The stock edit form would write the row without a FlagChange; send it to the list.
        return HttpResponseRedirect(reverse("admin:flags_flag_changelist"))

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if request.method == "POST":
            return self._change_flag(request)
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Feature flags",
            "opts": self.model._meta,
            "states": flag_states(),
            "can_change": self.has_change_permission(request),
            "changes_url": reverse("admin:flags_flagchange_changelist"),
            "reason_max_length": REASON_MAX_LENGTH,
        }
        return TemplateResponse(request, "flags/admin/flag_states.html", context)

    def _change_flag(self, request: HttpRequest) -> HttpResponse:
        if not self.has_change_permission(request):
            raise PermissionDenied
        form = FlagChangeForm(request.POST)
        if not form.is_valid():
            problems = "; ".join(
                f"{field}: {' '.join(str(error) for error in errors)}"
                for field, errors in form.errors.items()
            )
            self.message_user(request, f"Flag not changed — {problems}", messages.ERROR)
            return HttpResponseRedirect(request.path)
        name = form.cleaned_data["name"]
        value = form.cleaned_data["value"] == "on"
        change = flag_set(
            name=name,
            value=value,
            actor=request.user.get_username(),
            reason=form.cleaned_data["reason"],
            source=FlagSource.ADMIN,
        )
        effective = "on" if change.effective_value else "off"
        if change.effective_value == value:
            self.message_user(request, f"{name} is now {effective}.", messages.SUCCESS)
        else:
            self.message_user(
                request,
                f"{name} recorded as {form.cleaned_data['value']}, but the environment forces "
                f"it {effective} (its safe value), which wins until the environment changes.",
                messages.WARNING,
            )
        return HttpResponseRedirect(request.path)


@admin.register(FlagChange)
class FlagChangeAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "name",
        "old_word",
        "new_word",
        "effective_word",
        "source",
        "actor",
        "reason",
        "at",
    )
    list_filter = ("name", "source")
    search_fields = ("=name", "actor", "reason")
    date_hierarchy = "at"
    ordering = ("-id",)

    # Words, not the admin's boolean icons: a green tick on DISABLE_SEND=on read as "sending
    # is fine", and a first change (no operator value before) showed a "?".
    @admin.display(description="old", ordering="old_value")
    def old_word(self, change: FlagChange) -> str:
        return "(not set)" if change.old_value is None else _on_off(change.old_value)

    @admin.display(description="new", ordering="new_value")
    def new_word(self, change: FlagChange) -> str:
        return _on_off(change.new_value)

    @admin.display(description="in force after", ordering="effective_value")
    def effective_word(self, change: FlagChange) -> str:
        return _on_off(change.effective_value)


def _on_off(value: bool) -> str:
    return "on" if value else "off"
