from __future__ import annotations

from django.contrib import admin

from audit.models import AuditRecord, AuditSeal
from comcenter.lib.admin import ReadOnlyAdmin


@admin.register(AuditRecord)
class AuditRecordAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "event_uid", "message_uid", "request_id", "actor", "at")
    list_filter = ("kind",)
    search_fields = ("=event_uid", "=message_uid", "=request_id", "=recipient_id")
    date_hierarchy = "at"
    show_full_result_count = False


@admin.register(AuditSeal)
class AuditSealAdmin(ReadOnlyAdmin):
    list_display = ("seq", "first_id", "last_id", "prev_hash", "hash", "sealed_at")
    exclude = ("row_hashes",)
    date_hierarchy = "sealed_at"
    show_full_result_count = False
