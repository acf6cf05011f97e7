from __future__ import annotations

import uuid

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from audit.models import AuditRecord, AuditSeal
from comcenter.lib.admin import ReadOnlyAdmin


@admin.register(AuditRecord)
class AuditRecordAdmin(ReadOnlyAdmin):
    list_display = ("id", "at", "kind", "actor", "event_uid", "message_uid", "request_id")
    list_filter = ("kind",)
    # Newest first: what just happened is what an operator looks for.
    ordering = ("-id",)
    # Shown as the search box; the look-up itself is `get_search_results`.
    search_fields = ("event_uid", "message_uid", "request_id", "recipient_id")
    search_help_text = "An event id, message id, request id or recipient id."
    date_hierarchy = "at"
    show_full_result_count = False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[AuditRecord], search_term: str
    ) -> tuple[QuerySet[AuditRecord], bool]:
        """Exact matches, which the lineage's indexes answer. Django's `=field` compares
        UPPER(column::text), which no index serves: a message's "lineage" link (a search for
        its id) walked the whole table."""
        term = search_term.strip()
        if not term:
            return queryset, False
        found = Q(request_id=term) | Q(recipient_id=term)
        try:
            uid = uuid.UUID(term)
        except ValueError:
            return queryset.filter(found), False
        return queryset.filter(found | Q(event_uid=uid) | Q(message_uid=uid)), False


@admin.register(AuditSeal)
class AuditSealAdmin(ReadOnlyAdmin):
    list_display = ("seq", "first_id", "last_id", "prev_hash", "hash", "sealed_at")
    exclude = ("row_hashes",)
    date_hierarchy = "sealed_at"
    show_full_result_count = False
