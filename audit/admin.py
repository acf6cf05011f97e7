from __future__ import annotations

from django.contrib import admin

from audit.models import AuditRecord
from comcenter.lib.admin import ReadOnlyAdmin


@admin.register(AuditRecord)
class AuditRecordAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "event_uid", "message_uid", "request_id", "actor", "seq", "at")
    list_filter = ("kind",)
    search_fields = ("=event_uid", "=message_uid", "=request_id", "=recipient_id")
    date_hierarchy = "at"
    show_full_result_count = False
