"""Incidents (read-only, resolved by an operator with a POST action that checks
`guard.resolve_incident`) and the SLO report page."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone

from comcenter.lib.admin import ReadOnlyAdmin
from guard.models import Incident, IncidentState
from guard.services import IncidentNotOpen, incident_resolve
from guard.slo import slo_report, slo_report_text

SLO_PAGE_DAYS = 7


@admin.register(Incident)
class IncidentAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "trigger",
        "measured",
        "threshold",
        "window_seconds",
        "flag",
        "flag_was_on",
        "opened_at",
        "resolved_by",
        "state",
    )
    list_filter = ("state", "trigger", "flag")
    search_fields = ("=id", "detail", "resolved_by", "resolution")
    date_hierarchy = "opened_at"
    actions = ["resolve"]

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("guard.resolve_incident")

    @admin.action(
        description="Resolve the selected incidents (lowers a flag the guard raised)",
        permissions=["resolve"],
    )
    def resolve(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        if not self.has_resolve_permission(request):  # the action is POST; check again
            raise PermissionDenied
        actor = request.user.get_username()
        resolved = 0
        for incident in queryset.filter(state=IncidentState.OPEN):
            try:
                incident_resolve(
                    incident_id=incident.pk, actor=actor, reason=f"resolved in the admin by {actor}"
                )
            except IncidentNotOpen:
                continue
            resolved += 1
        self.message_user(request, f"{resolved} incident(s) resolved.", messages.SUCCESS)

    def get_urls(self) -> list[URLPattern]:
        return [
            path("slo/", self.admin_site.admin_view(self.slo_view), name="guard_slo_report"),
            *super().get_urls(),
        ]

    def slo_view(self, request: HttpRequest) -> HttpResponse:
        """The SLO report of the last SLO_PAGE_DAYS days (read-only)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        until = timezone.now()
        report = slo_report(since=until - timedelta(days=SLO_PAGE_DAYS), until=until)
        context = {
            **self.admin_site.each_context(request),
            "title": "SLO report and error budget",
            "opts": self.model._meta,
            "report": report,
            "lines": slo_report_text(report),
        }
        return TemplateResponse(request, "guard/admin/slo_report.html", context)
