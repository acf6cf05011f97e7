from __future__ import annotations

from django.db import models


class FloorEvent(models.Model):
    """One accepted request: what the floor writes, one row per event."""

    idempotency_key = models.CharField(max_length=255)
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.idempotency_key
