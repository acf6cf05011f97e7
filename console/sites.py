"""The admin site of the console: the dashboard as its first page, the kill switch, and the
auditors' export and chain check.

Every view here is wrapped in `admin_view` (staff login, CSRF, no caching) and checks its own
permission; the ones that change state accept POST only and call one service."""

from __future__ import annotations

import io
import tempfile
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.management import CommandError, call_command
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from audit.services import audit_append, audit_verify
from console.charts import line_chart
from console.figures import Figures, figures_now, history
from flags.models import FlagSource
from flags.registry import FLAGS
from flags.services import REASON_MAX_LENGTH, flag_is_on, flag_set

KILL_SWITCH = "DISABLE_SEND"
# Flags whose non-default, safe value changes what operators see happen: a banner says so
# on every page while one is on.
SAFETY_BANNERS = {
    "DISABLE_SEND": "Dry run: messages are rendered and recorded dry_run; nothing is sent.",
    "DISPATCH_PAUSED": "Dispatch paused: messages are held and go out in order when lifted.",
    "INTAKE_PAUSED": "Intake paused: new events are refused with 503.",
}
WINDOWS = {"hour": (timedelta(hours=1), 60), "day": (timedelta(days=1), 96)}
CHARTS = {
    "events": "Intake per minute, by outcome",
    "depth": "Queue depth",
    "oldest_s": "Oldest waiting message (s)",
    "ack_p95_ms": "Ack P95 (ms)",
    "dlq_ratio": "DLQ ratio",
    "delivery_rate": "Delivery rate (provider receipts)",
    "comcenter_auth_failures": "Auth failures per minute",
    "comcenter_deliveries": "Delivery outcomes per minute",
}


class KillSwitchForm(forms.Form):
    value = forms.ChoiceField(choices=[("on", "on"), ("off", "off")])
    reason = forms.CharField(max_length=REASON_MAX_LENGTH, strip=True)


class LineageExportForm(forms.Form):
    since = forms.DateTimeField(required=False, help_text="ISO 8601, e.g. 2026-12-01T00:00Z")
    until = forms.DateTimeField(required=False)
    event = forms.UUIDField(required=False, help_text="An event id.")
    recipient = forms.CharField(required=False, max_length=255)
    request_id = forms.CharField(required=False, max_length=128)
    format = forms.ChoiceField(choices=[("csv", "CSV"), ("json", "JSON")])


def _charts(window: str) -> list[Any]:
    span, buckets = WINDOWS[window]
    series = history(window=span, buckets=buckets)
    start = timezone.now() - span
    return [
        line_chart(title=title, series=series.get(key, []), start=start, window=span)
        for key, title in CHARTS.items()
    ]


class ConsoleAdminSite(admin.AdminSite):
    site_header = "comcenter operator console"
    site_title = "comcenter"
    index_title = "Dashboard"
    index_template = "console/dashboard.html"

    def each_context(self, request: HttpRequest) -> dict[str, Any]:
        context = super().each_context(request)
        context["environment_name"] = settings.ENVIRONMENT_NAME
        if (
            getattr(request, "user", None) is not None
            and request.user.is_active
            and request.user.is_staff
        ):
            context["safety_banners"] = [
                (name, text)
                for name, text in SAFETY_BANNERS.items()
                if name in FLAGS and flag_is_on(name)
            ]
        return context

    def _build_app_dict(self, request: HttpRequest, label: str | None = None) -> Any:
        # A ModelAdmin may name its list otherwise than its model's verbose name (a
        # third-party model whose Meta we cannot change without a migration in its package).
        app_dict = super()._build_app_dict(request, label)
        for app in [app_dict] if label else app_dict.values():
            for model in app.get("models", []):
                name = getattr(self._registry.get(model["model"]), "list_name", None)
                if name:
                    model["name"] = name
        return app_dict

    def get_urls(self) -> list[Any]:
        urls: list[URLPattern] = [
            path("console/panel/", self.admin_view(self.panel_view), name="console_panel"),
            path(
                "console/kill-switch/",
                self.admin_view(require_POST(self.kill_switch_view)),
                name="console_kill_switch",
            ),
            path("console/lineage/", self.admin_view(self.lineage_view), name="console_lineage"),
            path(
                "console/lineage/verify/",
                self.admin_view(require_POST(self.verify_view)),
                name="console_verify",
            ),
        ]
        return urls + super().get_urls()

    # --- the dashboard ------------------------------------------------------------------

    def _dashboard_context(self, request: HttpRequest) -> dict[str, Any]:
        if not request.user.has_perm("console.view_dashboard"):
            return {"dashboard": None}
        figures: Figures = figures_now()
        window = request.GET.get("window", "hour")
        window = window if window in WINDOWS else "hour"
        kill = next(state for state in figures.flags if state.name == KILL_SWITCH)
        return {
            "dashboard": figures,
            "window": window,
            "charts": _charts(window),
            "kill_switch": kill,
            "can_change_flags": request.user.has_perm("flags.change_flag"),
            "can_export": request.user.has_perm("console.export_lineage"),
            "reason_max_length": REASON_MAX_LENGTH,
            "refresh_seconds": settings.DASHBOARD_REFRESH_SECONDS,
            "retrying": figures.queue["by_state"].get("retrying", 0),
        }

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        return super().index(request, {**self._dashboard_context(request), **(extra_context or {})})

    def panel_view(self, request: HttpRequest) -> HttpResponse:
        """The dashboard's figures alone, fetched by console/dashboard.js to refresh in place."""
        context = self._dashboard_context(request)
        if context["dashboard"] is None:
            raise PermissionDenied
        return TemplateResponse(
            request, "console/panel.html", {**self.each_context(request), **context}
        )

    def kill_switch_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("flags.change_flag"):
            raise PermissionDenied
        form = KillSwitchForm(request.POST)
        if not form.is_valid():
            problems = "; ".join(f"{field}: {' '.join(e)}" for field, e in form.errors.items())
            self.message_user(request, f"Kill switch not changed — {problems}", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:index"))
        wanted = form.cleaned_data["value"] == "on"
        change = flag_set(
            name=KILL_SWITCH,
            value=wanted,
            actor=request.user.get_username(),
            reason=form.cleaned_data["reason"],
            source=FlagSource.ADMIN,
        )
        if change.effective_value != wanted:
            self.message_user(
                request,
                f"{KILL_SWITCH} recorded {form.cleaned_data['value']}, but the environment "
                "forces it on (its safe value): nothing is sent until the environment changes.",
                messages.WARNING,
            )
        elif wanted:
            self.message_user(
                request,
                "Kill switch on: from the next send every message is recorded dry_run and "
                "nothing leaves; retrying messages end as dry_run.",
                messages.WARNING,
            )
        else:
            self.message_user(
                request, "Kill switch off: messages are sent again.", messages.SUCCESS
            )
        return HttpResponseRedirect(reverse("admin:index"))

    def message_user(self, request: HttpRequest, message: str, level: int = messages.INFO) -> None:
        messages.add_message(request, level, message)

    # --- the auditors -------------------------------------------------------------------

    def lineage_view(self, request: HttpRequest) -> HttpResponse:
        """The export form; with `format` given, the export itself: one zip holding the
        lineage file and its MANIFEST.sha256, written by the `export_lineage` command."""
        if not request.user.has_perm("console.export_lineage"):
            raise PermissionDenied
        form = LineageExportForm(request.GET if "format" in request.GET else None)
        if form.is_bound and form.is_valid():
            try:
                return self._export(request, form.cleaned_data)
            except CommandError as exc:
                form.add_error(None, str(exc))
        context = {
            **self.each_context(request),
            "title": "Lineage: export and chain check",
            "form": form,
            "can_verify": request.user.has_perm("console.verify_audit_chain"),
        }
        return TemplateResponse(request, "console/lineage.html", context)

    def _export(self, request: HttpRequest, data: dict[str, Any]) -> HttpResponse:
        options: dict[str, Any] = {"format": data["format"]}
        for name in ("since", "until"):
            if data[name]:
                options[name] = data[name].isoformat()
        for name in ("event", "recipient", "request_id"):
            if data[name]:
                options[name] = str(data[name])
        with tempfile.TemporaryDirectory(prefix="lineage-") as out:
            call_command("export_lineage", out=out, stdout=io.StringIO(), **options)
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for file in sorted(Path(out).iterdir()):
                    archive.write(file, file.name)
            manifest = (Path(out) / "MANIFEST.sha256").read_text(encoding="utf-8")
        audit_append(
            kind="lineage.exported",
            actor=request.user.get_username(),
            data={"filters": options, "manifest": manifest.strip()},
        )
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response = HttpResponse(buffer.getvalue(), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="lineage-{stamp}.zip"'
        return response

    def verify_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("console.verify_audit_chain"):
            raise PermissionDenied
        report = audit_verify()
        audit_append(
            kind="audit.verified",
            actor=request.user.get_username(),
            data={"ok": report.ok, "checked": report.checked, "first_bad_id": report.first_bad_id},
        )
        context = {
            **self.each_context(request),
            "title": "Audit chain check",
            "report": report,
            "form": LineageExportForm(),
            "can_verify": True,
        }
        return TemplateResponse(request, "console/lineage.html", context)
