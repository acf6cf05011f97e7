"""Admin building blocks shared by the apps (imports Django only)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by services (events, lineage, attempts): viewable, never edited or
    deleted by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def state_badge(state: str) -> str:
    """A state as a coloured badge (console.css colours each `state-<name>`)."""
    return format_html('<span class="badge state-{}">{}</span>', state, state)


def short_link(url: str, uid: Any) -> str:
    """The first 8 characters of a uuid, linked to its record; the full id on hover."""
    text = str(uid)
    return format_html('<a class="short-id" href="{}" title="{}">{}</a>', url, text, text[:8])
