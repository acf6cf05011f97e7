"""Operator console for delivery: routes (editable), suppressions (added, or lifted with a
reason), messages and attempts (read-only), the dead-letter queue with its requeue and discard
actions, and the requeue of messages blocked by a template that has since been fixed.

Requeue and discard exist twice: as list actions and as POST buttons on the message's own
page (`<id>/requeue/`, `<id>/discard/`), each calling the same service of delivery/dlq.py.
Both kinds of requeue need the requeue right (`delivery.change_deadletter`, the Operator's)."""

from __future__ import annotations

from typing import Any, ClassVar, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from comcenter.lib.admin import (
    ObjectPageAdmin,
    ReadOnlyAdmin,
    object_post_url,
    short_link,
    state_badge,
)
from delivery import dlq, routes, suppressions
from delivery.gates import TEMPLATE_BLOCKS
from delivery.models import Attempt, DeadLetter, Message, MessageState, Route, Suppression
from flags.services import flag_is_on

REQUEUE_PERMISSION = "delivery.change_deadletter"
# What a requeue does while the kill switch is on, said before and after it.
KILL_SWITCH_WARNING = (
    "DISABLE_SEND is on: requeued messages are recorded dry_run (final) at their turn and "
    "nothing is sent. To keep them for later, turn DISABLE_SEND off first, or pause dispatch "
    "(DISPATCH_PAUSED) instead, which holds them."
)


@admin.register(Route)
class RouteAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "event_type",
        "template_key",
        "channel",
        "position",
        "enabled",
        "updated_at",
    )
    list_editable = ("enabled",)
    list_filter = ("channel", "enabled", "event_type")
    search_fields = ("event_type", "template_key")
    fields = routes.ROUTE_EDITABLE

    def save_model(self, request: HttpRequest, obj: Route, form: Any, change: bool) -> None:
        routes.route_save(route=obj, actor=request.user.get_username(), created=not change)

    def delete_model(self, request: HttpRequest, obj: Route) -> None:
        routes.route_delete(route=obj, actor=request.user.get_username())

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Route]) -> None:
        for route in queryset:
            routes.route_delete(route=route, actor=request.user.get_username())


class SuppressionAddForm(forms.ModelForm):
    class Meta:
        model = Suppression
        fields = ("channel", "address", "category", "reason", "note")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "channel" in self.fields:  # not on the read-only page of a row
            channel = cast(forms.ChoiceField, self.fields["channel"])
            channel.choices = [(c.value, c.label) for c in suppressions.CHANNELS]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        channel, address = cleaned.get("channel"), cleaned.get("address")
        if channel and address:
            try:
                cleaned["address"] = suppressions.suppression_address_check(
                    channel=channel, address=address
                )
            except ValueError as exc:
                self.add_error("address", str(exc))
        return cleaned


class SuppressionLiftForm(forms.Form):
    reason = forms.CharField(
        max_length=suppressions.LIFT_REASON_MAX_LENGTH,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why sends to this address may resume (kept in the lineage).",
    )


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "channel",
        "address",
        "category",
        "reason",
        "source",
        "note",
        "created_at",
    )
    list_filter = ("channel", "category", "reason")
    search_fields = ("=address", "source")
    search_help_text = "An exact address, or a source such as admin:olivia."
    form = SuppressionAddForm
    readonly_fields = ("source", "created_at")
    # Django's "delete selected" is replaced by the lifting action below (same name, so
    # the site-wide action does not come back): it asks for a reason first.
    actions = ("delete_selected",)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        added = ("channel", "address", "category", "reason", "note")
        return added if obj is None else (*added, "source", "created_at")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # add or lift; an edited address would be a different suppression

    def save_model(self, request: HttpRequest, obj: Suppression, form: Any, change: bool) -> None:
        username = request.user.get_username()
        row, _created = suppressions.suppression_ensure(
            channel=obj.channel,
            address=obj.address,
            category=obj.category,
            reason=obj.reason,
            note=obj.note,
            actor=username,
            source=f"admin:{username}",
        )
        obj.pk = row.pk  # the admin's redirect and log entry name the row that exists

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        if not self.has_delete_permission(request, obj):
            raise PermissionDenied
        if obj is None:  # lifted meanwhile
            self.message_user(request, "That suppression no longer exists.", messages.WARNING)
            return HttpResponseRedirect(reverse("admin:delivery_suppression_changelist"))
        page = self._lift(request, [obj], action="")
        return page or HttpResponseRedirect(reverse("admin:delivery_suppression_changelist"))

    @admin.action(description="Lift the selected suppressions (asks why)", permissions=["delete"])
    def delete_selected(
        self, request: HttpRequest, queryset: QuerySet[Suppression]
    ) -> TemplateResponse | None:
        return self._lift(request, list(queryset), action="delete_selected")

    def _lift(
        self, request: HttpRequest, rows: list[Suppression], *, action: str
    ) -> TemplateResponse | None:
        """Lift `rows` once the confirmation page was posted with a reason; else (first
        visit, or no reason given) show that page, changing nothing. None when lifted."""
        confirmed = request.method == "POST" and request.POST.get("post") == "yes"
        form = SuppressionLiftForm(request.POST if confirmed else None)
        if confirmed and form.is_valid():
            lifted = sum(
                suppressions.suppression_remove(
                    suppression=row,
                    actor=request.user.get_username(),
                    reason=form.cleaned_data["reason"],
                )
                for row in rows
            )
            self.message_user(request, f"Lifted {lifted} suppression(s).", messages.SUCCESS)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Lift suppressions?",
            "opts": self.model._meta,
            "form": form,
            "rows": rows[:100],
            "count": len(rows),
            "selected_ids": [row.pk for row in rows],
            "action": action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "delivery/admin/suppression_lift.html", context)


class AttemptInline(admin.TabularInline):
    model = Attempt
    fields = (
        "number",
        "outcome",
        "provider",
        "response_code",
        "error",
        "started_at",
        "finished_at",
        "stale",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("id",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class _MessageAdminBase(ReadOnlyAdmin, ObjectPageAdmin):
    change_form_template = "delivery/admin/message_change_form.html"
    # Per-row POST views at `<id>/<name>/`, each handled by the method `<name>_row`.
    row_views: ClassVar[tuple[str, ...]] = ()
    list_display = (
        "id",
        "state_badge",
        "short_uid",
        "channel",
        "template_key",
        "recipient_id",
        "event_link",
        "attempts",
        "last_error_short",
        "updated_at",
    )
    list_display_links = ("id",)
    list_select_related = ("event",)
    list_filter: ClassVar[tuple[str, ...]] = ("state", "channel", "provider", "template_key")
    search_fields = (
        "=uid",
        "=event__uid",
        "=event__request_id",
        "=recipient_id",
        "=to_address",
        "=state",
        "template_key",
    )
    search_help_text = "An id, event id, request id, recipient id, address, state or template."
    ordering = ("-id",)
    date_hierarchy = "created_at"
    show_full_result_count = False
    inlines = (AttemptInline,)
    exclude = ("template", "template_version", "route", "lane", "event")
    readonly_fields = ("event_link", "lineage_link", "route", "template_version")

    @admin.display(description="state", ordering="state")
    def state_badge(self, obj: Message) -> str:
        return state_badge(obj.state)

    @admin.display(description="id", ordering="uid")
    def short_uid(self, obj: Message) -> str:
        return short_link(reverse("admin:delivery_message_change", args=[obj.pk]), obj.uid)

    @admin.display(description="event")
    def event_link(self, obj: Message) -> str:
        return short_link(reverse("admin:events_event_change", args=[obj.event_id]), obj.event.uid)

    @admin.display(description="last error")
    def last_error_short(self, obj: Message) -> str:
        return obj.last_error if len(obj.last_error) <= 60 else f"{obj.last_error[:60]}…"

    @admin.display(description="lineage")
    def lineage_link(self, obj: Message) -> str:
        url = reverse("admin:audit_auditrecord_changelist")
        return format_html('<a href="{}?q={}">lineage of this message</a>', url, obj.uid)

    def has_requeue_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(REQUEUE_PERMISSION)

    # --- per-row buttons ------------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        rows = [object_post_url(self, name, self._row_view(name)) for name in self.row_views]
        return [*rows, *super().get_urls()]

    def _row_view(self, name: str) -> Any:
        def view(request: HttpRequest, object_id: str) -> HttpResponse:
            message = self.get_object(request, unquote(object_id))
            if message is None:
                return self.object_missing(request)
            if not self.has_requeue_permission(request):
                raise PermissionDenied
            response: HttpResponse | None = getattr(self, f"{name}_row")(request, message)
            return response or HttpResponseRedirect(self._row_done_url(message))

        return view

    def _row_done_url(self, message: Message) -> str:
        return reverse("admin:delivery_message_change", args=[message.pk])

    def row_buttons(self, request: HttpRequest, message: Message) -> list[tuple[str, str]]:
        """(URL suffix, label) of the buttons this user may press on this message's page."""
        return []

    def object_context(self, request: HttpRequest, obj: Message) -> dict[str, Any]:
        if not self.has_requeue_permission(request):
            return {}
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        buttons = [
            (reverse(f"admin:{info}_{name}", args=[obj.pk]), name, label)
            for name, label in self.row_buttons(request, obj)
        ]
        warning = KILL_SWITCH_WARNING if buttons and flag_is_on("DISABLE_SEND") else ""
        return {"row_buttons": buttons, "kill_switch_warning": warning}

    def _requeue_warning(self, request: HttpRequest) -> None:
        if flag_is_on("DISABLE_SEND"):
            self.message_user(request, KILL_SWITCH_WARNING, messages.WARNING)


@admin.register(Message)
class MessageAdmin(_MessageAdminBase):
    """Messages, read-only; blocked ones can be requeued once their template is fixed."""

    actions = ("requeue_blocked",)
    row_views = ("requeue",)

    def row_buttons(self, request: HttpRequest, message: Message) -> list[tuple[str, str]]:
        if message.state == MessageState.BLOCKED and message.last_error in TEMPLATE_BLOCKS:
            return [("requeue", "Requeue (its template is fixed)")]
        return []

    def requeue_row(self, request: HttpRequest, message: Message) -> None:
        self._report_blocked(
            request,
            dlq.message_requeue_blocked(
                message_ids=[message.pk], actor=request.user.get_username()
            ),
        )

    @admin.action(
        description="Requeue the selected blocked messages (template fixed)",
        permissions=["requeue"],
    )
    def requeue_blocked(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        self._report_blocked(
            request,
            dlq.message_requeue_blocked(
                message_ids=list(queryset.values_list("pk", flat=True)),
                actor=request.user.get_username(),
            ),
        )

    def _report_blocked(self, request: HttpRequest, result: dlq.Requeued) -> None:
        if result.moved:
            self.message_user(
                request, f"Requeued {result.moved} blocked message(s).", messages.SUCCESS
            )
            self._requeue_warning(request)
        for reason, uids in result.refused.items():
            shown = ", ".join(uid[:8] for uid in uids[:10])
            more = f" and {len(uids) - 10} more" if len(uids) > 10 else ""
            self.message_user(
                request,
                f"Not requeued, {len(uids)} message(s): {reason} ({shown}{more}).",
                messages.ERROR,
            )


@admin.register(DeadLetter)
class DeadLetterAdmin(_MessageAdminBase):
    """The dead-letter queue: review, then requeue or discard (each action is one service)."""

    list_filter = ("channel", "provider", "template_key")
    actions = ("requeue", "discard")
    row_views = ("requeue", "discard")

    def get_queryset(self, request: HttpRequest) -> QuerySet[DeadLetter]:
        return super().get_queryset(request).filter(state=MessageState.DEAD)

    def row_buttons(self, request: HttpRequest, message: Message) -> list[tuple[str, str]]:
        return [("requeue", "Requeue"), ("discard", "Discard…")]

    def _row_done_url(self, message: Message) -> str:
        # The message left the dead-letter queue (requeued or deleted): back to the list.
        return reverse("admin:delivery_deadletter_changelist")

    def requeue_row(self, request: HttpRequest, message: DeadLetter) -> None:
        self._requeue(request, [message.pk])

    def discard_row(self, request: HttpRequest, message: DeadLetter) -> HttpResponse | None:
        return self._discard(request, self.get_queryset(request).filter(pk=message.pk))

    @admin.action(description="Requeue the selected dead messages", permissions=["requeue"])
    def requeue(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        self._requeue(request, list(queryset.values_list("pk", flat=True)))

    @admin.action(description="Discard the selected dead messages", permissions=["requeue"])
    def discard(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> Any:
        return self._discard(request, queryset)

    def _requeue(self, request: HttpRequest, ids: list[int]) -> None:
        count = dlq.message_requeue_dead(message_ids=ids, actor=request.user.get_username())
        self.message_user(request, f"Requeued {count} dead message(s).", messages.SUCCESS)
        if count:
            self._requeue_warning(request)

    def _discard(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> HttpResponse | None:
        if request.POST.get("post") != "yes":
            # Discarding deletes: a page names what goes and asks again.
            context = {
                **self.admin_site.each_context(request),
                "title": "Discard dead messages?",
                "opts": self.model._meta,
                "messages_to_discard": list(queryset[:100]),
                "selected_ids": list(queryset.values_list("pk", flat=True)),
                "count": queryset.count(),
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(request, "delivery/admin/discard_confirm.html", context)
        count = dlq.message_discard_dead(
            message_ids=list(queryset.values_list("pk", flat=True)),
            actor=request.user.get_username(),
        )
        self.message_user(request, f"Discarded {count} dead message(s).", messages.SUCCESS)
        return None


@admin.register(Attempt)
class AttemptAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "outcome_badge",
        "message_uid",
        "number",
        "provider",
        "response_code",
        "error",
        "stale_note",
        "started_at",
        "finished_at",
    )
    list_select_related = ("message",)
    ordering = ("-id",)
    list_filter = ("outcome", "provider", "stale")
    search_fields = ("=message__uid", "=response_code")
    show_full_result_count = False

    @admin.display(description="message")
    def message_uid(self, obj: Attempt) -> str:
        return short_link(
            reverse("admin:delivery_message_change", args=[obj.message_id]), obj.message.uid
        )

    @admin.display(description="outcome", ordering="outcome")
    def outcome_badge(self, obj: Attempt) -> str:
        return state_badge(obj.outcome)

    @admin.display(description="stale", ordering="stale")
    def stale_note(self, obj: Attempt) -> str:
        # Text, not a boolean icon: a red cross on every healthy row read as a failure.
        return "stale (lease ran out)" if obj.stale else ""
