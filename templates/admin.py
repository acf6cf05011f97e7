"""Operator console for templates: edit with validation, preview with sample data, version
history, whitelist and enable switches.

Saving never writes the row directly: a new template goes through `template_create`, an
edit through `template_update` (which creates a new immutable version when the content
changed), and the switches through their services, so every change is audited."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from audit.models import AuditRecord
from templates.models import Template, TemplateVersion
from templates.rendering import RenderError, render_version, validate_source
from templates.sandbox import ALLOWED_FILTERS, ALLOWED_TAGS
from templates.services import (
    locale_clean,
    template_create,
    template_locale_taken,
    template_set_enabled,
    template_set_whitelisted,
    template_update,
)

_SYNTAX_HELP = (
    "Django template syntax. Tags: {tags}. Filters: {filters}. A variable the event data "
    "lacks fails the message; {{% if x %}} and {{% firstof x 'fallback' %}} test for optional "
    "data."
).format(tags=", ".join(sorted(ALLOWED_TAGS)), filters=", ".join(sorted(ALLOWED_FILTERS)))


class TemplateForm(forms.ModelForm):
    class Meta:
        model = Template
        fields = (
            "key",
            "channel",
            "locale",
            "category",
            "tier",
            "enabled",
            "whitelisted",
            "description",
            "subject",
            "body",
            "html",
            "sample_data",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in ("subject", "body", "html"):
            if field in self.fields:
                self.fields[field].help_text = f"{self.fields[field].help_text} {_SYNTAX_HELP}"

    def _clean_source(self, field: str) -> str:
        # Browsers submit textareas with CRLF line ends: stored as LF, so saving an unchanged
        # template from the browser is not a content change and makes no new version.
        return (self.cleaned_data.get(field) or "").replace("\r\n", "\n")

    def clean_subject(self) -> str:
        return self._clean_source("subject")

    def clean_body(self) -> str:
        return self._clean_source("body")

    def clean_html(self) -> str:
        return self._clean_source("html")

    def clean_locale(self) -> str:
        return locale_clean(self.cleaned_data.get("locale") or "")

    def clean_sample_data(self) -> Any:
        value = self.cleaned_data.get("sample_data")
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValidationError("Sample data must be a JSON object, like an event's data.")
        return value

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        key, locale = cleaned.get("key"), cleaned.get("locale")
        if (
            self.instance.pk is None
            and key
            and locale
            and template_locale_taken(key=key, locale=locale)
        ):
            self.add_error("locale", "This key already has a template in that locale.")
        channel = cleaned.get("channel", self.instance.channel)
        try:
            validate_source(
                channel=channel or "",
                subject=cleaned.get("subject") or "",
                body=cleaned.get("body") or "",
                html=cleaned.get("html") or "",
            )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, errors)
        return cleaned


class TemplateVersionInline(admin.TabularInline):
    model = TemplateVersion
    fields = ("number", "created_at", "created_by", "content_hash", "subject", "body_start")
    readonly_fields = fields
    ordering = ("-number",)
    extra = 0
    can_delete = False
    verbose_name_plural = "Version history (immutable)"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="body")
    def body_start(self, version: TemplateVersion) -> str:
        return version.body if len(version.body) <= 80 else f"{version.body[:80]}…"


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    form = TemplateForm
    list_display = (
        "id",
        "key",
        "locale",
        "channel",
        "category",
        "tier",
        "version_number",
        "enabled",
        "whitelisted",
        "updated_at",
    )
    list_filter = ("channel", "category", "tier", "enabled", "whitelisted", "locale")
    list_select_related = ("current_version",)
    search_fields = ("key", "description")
    inlines = (TemplateVersionInline,)
    actions = ("whitelist", "unwhitelist", "enable", "disable")
    object_history_template = "templates/admin/template_history.html"

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> Any:
        # Every change goes through an audited service, not the admin's LogEntry: History
        # shows the template's lineage rows.
        lineage = (
            list(
                AuditRecord.objects.filter(
                    kind__startswith="template.", data__template_id=int(object_id)
                ).order_by("-id")[:100]
            )
            if object_id.isdigit()
            else []
        )
        return super().history_view(
            request, object_id, {**(extra_context or {}), "lineage": lineage}
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # messages keep pointing at its versions; disable it instead

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        # Key, channel and locale identify what routes and messages refer to; the switches
        # have their own audited actions.
        return (
            "key",
            "channel",
            "locale",
            "enabled",
            "whitelisted",
            "version_number",
            "created_at",
            "updated_at",
            "preview",
        )

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        fields = TemplateForm.Meta.fields
        if obj is None:
            return fields
        return (*fields, "version_number", "created_at", "updated_at", "preview")

    @admin.display(description="version", ordering="current_version__number")
    def version_number(self, template: Template) -> int | None:
        return template.current_version.number if template.current_version else None

    @admin.display(description="preview (current version, sample data)")
    def preview(self, template: Template) -> str:
        if template.current_version is None:
            return "-"
        try:
            rendered = render_version(template.current_version, template.sample_data)
        except RenderError as exc:
            return format_html('<p class="errornote">Preview failed: {}</p>', str(exc))
        html = (
            format_html(
                '<iframe sandbox="" srcdoc="{}" title="HTML preview" '
                'style="width:100%;min-height:240px;border:1px solid #ccc"></iframe>',
                rendered.html,
            )
            if rendered.html
            else ""
        )
        return format_html(
            '<div class="template-preview"><p><strong>Subject:</strong> {}</p>'
            "<pre>{}</pre>{}<p><small>content hash {}</small></p></div>",
            rendered.subject or "-",
            rendered.text,
            html,
            rendered.content_hash,
        )

    def save_model(self, request: HttpRequest, obj: Template, form: Any, change: bool) -> None:
        data = form.cleaned_data
        actor = request.user.get_username()
        if not change:
            created = template_create(
                **{field: data[field] for field in TemplateForm.Meta.fields}, actor=actor
            )
            # The admin goes on with `obj` (log entry, redirect): make it the created row.
            obj.pk = created.pk
            obj.refresh_from_db()
            return
        version = template_update(
            template=obj,
            actor=actor,
            **{
                field: data[field]
                for field in ("subject", "body", "html", "category", "tier", "description")
            },
            sample_data=data["sample_data"],
        )
        if version is not None:
            self.message_user(request, f"Saved as version {version.number}.", messages.INFO)
        else:
            self.message_user(request, "The content did not change; no new version.")

    def _switch(
        self,
        request: HttpRequest,
        queryset: QuerySet[Template],
        service: Callable[..., bool],
        value: bool,
        done: str,
    ) -> None:
        actor = request.user.get_username()
        total = changed = 0
        for template in queryset:
            total += 1
            changed += service(template=template, value=value, actor=actor)
        self.message_user(
            request,
            f"{changed} template(s) {done}; {total - changed} already were.",
            messages.SUCCESS,
        )

    @admin.action(description="Whitelist the selected templates", permissions=["change"])
    def whitelist(self, request: HttpRequest, queryset: QuerySet[Template]) -> None:
        self._switch(request, queryset, template_set_whitelisted, True, "whitelisted")

    @admin.action(
        description="Remove the selected templates from the whitelist", permissions=["change"]
    )
    def unwhitelist(self, request: HttpRequest, queryset: QuerySet[Template]) -> None:
        self._switch(request, queryset, template_set_whitelisted, False, "unwhitelisted")

    @admin.action(description="Enable the selected templates", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[Template]) -> None:
        self._switch(request, queryset, template_set_enabled, True, "enabled")

    @admin.action(description="Disable the selected templates", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[Template]) -> None:
        self._switch(request, queryset, template_set_enabled, False, "disabled")
