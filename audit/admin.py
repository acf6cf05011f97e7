from __future__ import annotations

from django.contrib import admin

from audit.models import AuditRecord, AuditSeal
from comcenter.lib.admin import ReadOnlyAdmin


@admin.register(AuditRecord)
class AuditRecordAdmin(ReadOnlyAdmin):
    list_display = ("id", "at", "kind", "actor", "event_uid", "message_uid", "request_id")
    list_filter = ("kind",)
    # Newest first: what just happened is what an operator looks for.
    ordering = ("-id",)
    search_fields = ("=event_uid", "=message_uid", "=request_id", "=recipient_id")
    search_help_text = "An event id, message id, request id or recipient id."
    date_hierarchy = "at"
    show_full_result_count = False


@admin.register(AuditSeal)
class AuditSealAdmin(ReadOnlyAdmin):
    list_display = ("seq", "first_id", "last_id", "prev_hash", "hash", "sealed_at")
    exclude = ("row_hashes",)
    date_hierarchy = "sealed_at"
    show_full_result_count = False
