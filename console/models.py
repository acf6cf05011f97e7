"""The console's own rows: one sample of the operations figures per minute, the dashboard's
history (reading a day of samples is bounded, recounting a day of events is not).

The model also carries the console's permissions, which belong to no table of another app."""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now


class Sample(models.Model):
    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField(db_default=Now(), db_index=True)
    # Counts of the minute before `at` and the gauges read at `at` (console/figures.py).
    data = models.JSONField(default=dict)

    class Meta:
        ordering = ["id"]
        default_permissions = ()
        permissions = [
            ("view_dashboard", "Can see the operations dashboard"),
            ("export_lineage", "Can export audit lineage from the admin"),
            ("verify_audit_chain", "Can run the audit chain check from the admin"),
        ]

    def __str__(self) -> str:
        return f"sample {self.at:%Y-%m-%d %H:%M}"
