"""Operator console for templates: edit with validation, preview with sample data, version
history, whitelist and enable switches.

A switch always asks for a reason, which its lineage row keeps: on the template's own page
(buttons beside a reason field, POST to `<id>/switch/`) and as list actions, which show an
intermediate page naming the templates and asking the reason before anything changes.

Saving never writes the row directly: a new template goes through `template_create`, an
edit through `template_update` (which creates a new immutable version when the content
changed), and the switches through their services, so every change is audited."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from audit.models import AuditRecord
from comcenter.lib.admin import ObjectPageAdmin, object_post_url
from templates.models import Template, TemplateVersion
from templates.rendering import RenderError, render_version, validate_source
from templates.sandbox import ALLOWED_FILTERS, ALLOWED_TAGS
from templates.services import (
    SWITCH_REASON_MAX_LENGTH,
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


# switch name -> (the field it sets, its value, past tense, button label)
SWITCHES: dict[str, tuple[str, bool, str, str]] = {
    "whitelist": ("whitelisted", True, "whitelisted", "Whitelist"),
    "unwhitelist": ("whitelisted", False, "unwhitelisted", "Remove from whitelist"),
    "enable": ("enabled", True, "enabled", "Enable"),
    "disable": ("enabled", False, "disabled", "Disable"),
}
_SERVICES: dict[str, Callable[..., bool]] = {
    "whitelisted": template_set_whitelisted,
    "enabled": template_set_enabled,
}


class SwitchForm(forms.Form):
    switch = forms.ChoiceField(choices=[(name, name) for name in SWITCHES])
    reason = forms.CharField(
        max_length=SWITCH_REASON_MAX_LENGTH,
        strip=True,
        help_text="Why; kept in the template's lineage (its History).",
    )


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
class TemplateAdmin(ObjectPageAdmin):
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
    change_form_template = "templates/admin/template_change_form.html"
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

    def get_urls(self) -> list[Any]:
        return [object_post_url(self, "switch", self.switch_view), *super().get_urls()]

    def object_context(self, request: HttpRequest, obj: Template) -> dict[str, Any]:
        if not self.has_change_permission(request, obj):
            return {}
        # Only the switches that would change something: a disabled template offers Enable,
        # not Disable.
        switches = [
            (name, label)
            for name, (field, value, _done, label) in SWITCHES.items()
            if getattr(obj, field) != value
        ]
        return {"switches": switches, "switch_form": SwitchForm()}

    def switch_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """One switch of one template from its page, with the reason the form requires."""
        template = self.get_object(request, unquote(object_id))
        if template is None:
            return self.object_missing(request)
        if not self.has_change_permission(request, template):
            raise PermissionDenied
        form = SwitchForm(request.POST)
        if not form.is_valid():
            return self._switch_page(request, [template], form, status=400)
        self._apply(request, [template], form.cleaned_data["switch"], form.cleaned_data["reason"])
        return HttpResponseRedirect(reverse("admin:templates_template_change", args=[template.pk]))

    def _switch_page(
        self,
        request: HttpRequest,
        templates: list[Template],
        form: SwitchForm,
        *,
        action: str = "",
        status: int = 200,
    ) -> TemplateResponse:
        """The page that asks for the reason (a list action) or shows what was wrong with
        it (the template's own form): nothing has changed yet."""
        name = form.data.get("switch") or action
        label = SWITCHES[name][3] if name in SWITCHES else "Switch"
        context = {
            **self.admin_site.each_context(request),
            "title": f"{label}: why?",
            "opts": self.opts,
            "form": form,
            "switch": name,
            "label": label,
            "templates_to_switch": templates[:100],
            "selected_ids": [t.pk for t in templates],
            "count": len(templates),
            "action": action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(
            request, "templates/admin/template_switch.html", context, status=status
        )

    def _apply(
        self, request: HttpRequest, templates: Iterable[Template], switch: str, reason: str
    ) -> None:
        field, value, done, _label = SWITCHES[switch]
        service = _SERVICES[field]
        actor = request.user.get_username()
        total = changed = 0
        for template in templates:
            total += 1
            changed += service(template=template, value=value, actor=actor, reason=reason)
        self.message_user(
            request,
            f"{changed} template(s) {done}; {total - changed} already were.",
            messages.SUCCESS,
        )

    def _switch_action(
        self, request: HttpRequest, queryset: QuerySet[Template], switch: str
    ) -> Any:
        templates = list(queryset.order_by("key", "locale"))
        if "reason" not in request.POST:
            form = SwitchForm(initial={"switch": switch})
            return self._switch_page(request, templates, form, action=switch)
        form = SwitchForm({"switch": switch, "reason": request.POST["reason"]})
        if not form.is_valid():
            return self._switch_page(request, templates, form, action=switch, status=400)
        self._apply(request, templates, switch, form.cleaned_data["reason"])
        return None

    @admin.action(description="Whitelist the selected templates", permissions=["change"])
    def whitelist(self, request: HttpRequest, queryset: QuerySet[Template]) -> Any:
        return self._switch_action(request, queryset, "whitelist")

    @admin.action(
        description="Remove the selected templates from the whitelist", permissions=["change"]
    )
    def unwhitelist(self, request: HttpRequest, queryset: QuerySet[Template]) -> Any:
        return self._switch_action(request, queryset, "unwhitelist")

    @admin.action(description="Enable the selected templates", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[Template]) -> Any:
        return self._switch_action(request, queryset, "enable")

    @admin.action(description="Disable the selected templates", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[Template]) -> Any:
        return self._switch_action(request, queryset, "disable")
