"""Append-only lineage of everything that happens to an event, a message or a flag.

Rows are inserted by `audit.services` only and never updated except once, by the sealer,
which assigns each row its place in the hash chain (`seq`, `prev_hash`, `hash`). Sealing
after the fact keeps the intake transaction free of a global lock."""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now


class AuditRecord(models.Model):
    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField(db_default=Now())
    kind = models.CharField(max_length=64)
    request_id = models.CharField(max_length=128, blank=True)
    event_uid = models.UUIDField(null=True, blank=True)
    message_uid = models.UUIDField(null=True, blank=True)
    recipient_id = models.CharField(max_length=255, blank=True)
    actor = models.CharField(max_length=300, blank=True)
    data = models.JSONField(default=dict)
    seq = models.PositiveBigIntegerField(null=True, blank=True, unique=True)
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["event_uid"], name="audit_event"),
            models.Index(fields=["message_uid"], name="audit_message"),
            models.Index(fields=["request_id"], name="audit_request"),
            models.Index(fields=["recipient_id"], name="audit_recipient"),
            models.Index(fields=["at"], name="audit_at"),
            models.Index(fields=["id"], name="audit_unsealed", condition=models.Q(seq=None)),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.id}"
