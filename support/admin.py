"""Operator console for support routing: the classification rules (edited, audited, with a
"test this rule" preview on a sample ticket) and the classified tickets (read-only)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from comcenter.lib.admin import ReadOnlyAdmin
from support import services
from support.classifier import TicketFacts
from support.models import Rule, Ticket


class SampleTicketForm(forms.Form):
    subject = forms.CharField(max_length=500, required=False)
    body = forms.CharField(max_length=20_000, required=False, widget=forms.Textarea)
    channel = forms.CharField(max_length=30, initial="email")
    order_number = forms.CharField(max_length=100, required=False)


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "name",
        "priority",
        "intent",
        "team",
        "reply_template",
        "enabled",
        "updated_at",
    )
    list_filter = ("enabled", "intent", "match", "scope")
    search_fields = ("name", "keywords", "tags", "team")
    ordering = ("priority", "id")
    fields = (*services.RULE_FIELDS, "test_link")
    readonly_fields = ("test_link",)

    @admin.display(description="Test this rule")
    def test_link(self, rule: Rule) -> str:
        if not rule.pk:
            return "Save the rule first."
        url = reverse("admin:support_rule_test", args=[rule.pk])
        return format_html('<a href="{}">Try it on a sample ticket</a>', url)

    def get_urls(self) -> list[URLPattern]:
        test = path(
            "<path:object_id>/test/",
            self.admin_site.admin_view(self.test_view),
            name="support_rule_test",
        )
        return [test, *super().get_urls()]

    def test_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The rule applied to a sample ticket; reads only, so viewing rights suffice."""
        rule = get_object_or_404(Rule, pk=object_id)
        if not self.has_view_or_change_permission(request, rule):
            raise PermissionDenied
        form = SampleTicketForm(request.POST or None)
        result = None
        if request.method == "POST" and form.is_valid():
            result = services.rule_preview(rule=rule, facts=TicketFacts(**form.cleaned_data))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Test rule “{rule.name}”",
            "opts": self.model._meta,
            "rule": rule,
            "form": form,
            "result": result,
        }
        return TemplateResponse(request, "support/admin/rule_test.html", context)

    def save_model(self, request: HttpRequest, obj: Rule, form: Any, change: bool) -> None:
        services.rule_save(
            rule=obj,
            actor=request.user.get_username(),
            created=not change,
            changed=form.changed_data if change else services.RULE_FIELDS,
        )

    def delete_model(self, request: HttpRequest, obj: Rule) -> None:
        services.rule_delete(rule=obj, actor=request.user.get_username())

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Rule]) -> None:
        for rule in queryset:
            services.rule_delete(rule=rule, actor=request.user.get_username())


@admin.register(Ticket)
class TicketAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "ticket_id",
        "intent",
        "rule_name",
        "team",
        "reply_template",
        "order_match",
        "created_at",
    )
    list_select_related = ("event",)
    list_filter = ("intent", "order_match", "reply_tier")
    search_fields = ("=ticket_id", "rule_name", "team")
    exclude = ("event",)
