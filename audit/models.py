"""Append-only lineage of everything that happens to an event, a message or a flag, and the
seals that chain it.

Rows are inserted by `audit.services` and never updated. The sealer inserts one `AuditSeal`
per batch of rows: the batch's id range, the hash of each row in it, the previous seal's
hash, all signed with AUDIT_KEY (see `audit.services`). On PostgreSQL a trigger refuses any
UPDATE, and any DELETE outside the retention purge function (migration 0003)."""

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

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["event_uid"], name="audit_event"),
            # Partial: the event's own rows (a third of them) name no message, and every
            # `message_uid = X` implies the predicate, so each look-up still uses it.
            models.Index(
                fields=["message_uid"],
                name="audit_message",
                condition=models.Q(message_uid__isnull=False),
            ),
            models.Index(fields=["request_id"], name="audit_request"),
            models.Index(fields=["recipient_id"], name="audit_recipient"),
            models.Index(fields=["at"], name="audit_at"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.id}"


class AuditSeal(models.Model):
    """One sealed batch of lineage rows: ids `first_id`..`last_id` except `gaps` (ids that no
    committed row holds, e.g. of a rolled-back transaction), in id order."""

    seq = models.PositiveBigIntegerField(primary_key=True)
    first_id = models.BigIntegerField()
    last_id = models.BigIntegerField()
    gaps = models.JSONField(default=list)
    # SHA-256 of each row (audit.services.audit_row_hash), 32 bytes each, in id order.
    row_hashes = models.BinaryField()
    prev_hash = models.CharField(max_length=64)
    sealed_at = models.DateTimeField()
    # HMAC-SHA256 with AUDIT_KEY of the seal's header (audit.services.audit_seal_header).
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["seq"]
        indexes = [models.Index(fields=["last_id"], name="audit_seal_last_id")]

    def __str__(self) -> str:
        return f"seal {self.seq} (rows {self.first_id}-{self.last_id})"
