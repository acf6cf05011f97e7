"""Admin building blocks shared by the apps (imports Django only)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by services (events, lineage, attempts): viewable, never edited or
    deleted by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ObjectPageAdmin(admin.ModelAdmin):
    """A ModelAdmin whose object page shows more than its fields (buttons beside a reason,
    per-row actions): `object_context` gives the page's extra context."""

    def object_context(self, request: HttpRequest, obj: Any) -> dict[str, Any]:
        return {}

    def object_missing(self, request: HttpRequest) -> HttpResponse:
        """What a button of an object no longer on this list answers (pressed twice, or the
        message left the dead-letter queue meanwhile): back to the list, changing nothing."""
        self.message_user(
            request,
            f"That {self.opts.verbose_name} is no longer here; nothing was changed.",
            messages.WARNING,
        )
        return HttpResponseRedirect(
            reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> Any:
        obj = self.get_object(request, unquote(object_id))
        context = self.object_context(request, obj) if obj is not None else {}
        return super().change_view(
            request, object_id, form_url, {**(extra_context or {}), **context}
        )


def object_post_url(
    model_admin: admin.ModelAdmin, name: str, view: Callable[..., HttpResponse]
) -> URLPattern:
    """`<id>/<name>/` of a ModelAdmin, named `<app>_<model>_<name>`: POST only (a GET is
    405), behind the admin's login, CSRF check and no-cache; `view` checks its permission."""
    opts = model_admin.opts
    return path(
        f"<path:object_id>/{name}/",
        model_admin.admin_site.admin_view(require_POST(view)),
        name=f"{opts.app_label}_{opts.model_name}_{name}",
    )


def state_badge(state: str) -> str:
    """A state as a coloured badge (console.css colours each `state-<name>`)."""
    return format_html('<span class="badge state-{}">{}</span>', state, state)


def short_link(url: str, uid: Any) -> str:
    """The first 8 characters of a uuid, linked to its record; the full id on hover."""
    text = str(uid)
    return format_html('<a class="short-id" href="{}" title="{}">{}</a>', url, text, text[:8])
