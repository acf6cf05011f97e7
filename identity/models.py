"""Identity: the service accounts that call the API, and the identity provider's keys.

Both tables were created by the events app and keep their names (`db_table`); the move was
recorded with SeparateDatabaseAndState migrations, so existing rows stay where they are."""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now

EVENT_SCOPES = ("events:write", "events:read")
# Granted one by one (never implied by the identity provider's required role): a service
# that may submit events need not be able to read or lift someone's opt-out.
SUPPRESSION_SCOPES = ("suppressions:read", "suppressions:write")
SCOPES = (*EVENT_SCOPES, *SUPPRESSION_SCOPES)


class ServiceAccount(models.Model):
    """A machine client. The secret is shown once and stored as a SHA-256 hash: it is 256 bits
    of randomness, so a slow password hash would add latency and no protection."""

    name = models.CharField(max_length=100, unique=True)
    client_id = models.CharField(max_length=64, unique=True)
    secret_hash = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(db_default=Now())
    revoked_at = models.DateTimeField(null=True, blank=True)
    rotated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # The table keeps the name it had in the events app (moved without copying data).
        db_table = "events_serviceaccount"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def caller(self) -> str:
        return f"sa:{self.client_id}"


class JwksState(models.Model):
    """The identity provider's last-known-good JWKS, shared by every process and node.

    A process that starts while the identity provider is unreachable still verifies tokens
    with these keys for JWKS_STALE_GRACE_HOURS after `fetched_at`. Written by
    `identity.jwks` only; failed fetches update `last_attempt_at`/`last_error` and never
    replace the keys."""

    url = models.CharField(max_length=1000, unique=True)
    jwks = models.JSONField(default=dict)
    fetched_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        db_table = "events_jwksstate"
        verbose_name = "JWKS state"
        verbose_name_plural = "JWKS state"

    def __str__(self) -> str:
        return self.url
