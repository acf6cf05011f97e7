"""The guard's incidents, its on/off record, and the shared measurements on the embedded
default (with Redis configured they live in Redis; see guard/measurements.py)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.db.models.functions import Now


class Trigger(models.TextChoices):
    """The four pause criteria of SPEC §8 (their table lives in guard/triggers.py)."""

    ERRORS_5XX = "errors_5xx", "5xx ratio"
    JWT_FAILURES = "jwt_failures", "JWT failure ratio"
    QUEUE_DEPTH = "queue_depth", "queue depth over baseline"
    ACK_P95 = "ack_p95", "P95 ack latency"


class IncidentState(models.TextChoices):
    OPEN = "open"
    RESOLVED = "resolved"


class Incident(models.Model):
    """One trip of a trigger: what was measured against which threshold, and what the guard
    did. At most one open incident per trigger (a partial unique index, so two guard runs
    racing cannot both open one)."""

    trigger = models.CharField(max_length=20, choices=Trigger.choices)
    state = models.CharField(
        max_length=10, choices=IncidentState.choices, default=IncidentState.OPEN
    )
    measured = models.FloatField(help_text="The value that tripped the trigger.")
    threshold = models.FloatField()
    window_seconds = models.PositiveIntegerField()
    samples = models.PositiveIntegerField(help_text="Requests or samples in the window.")
    flag = models.CharField(max_length=50, help_text="The flag the guard turned on.")
    flag_was_on = models.BooleanField(
        help_text="Whether the flag was already on when the trigger tripped (then resolving "
        "leaves it on)."
    )
    detail = models.CharField(max_length=500, blank=True)
    opened_at = models.DateTimeField(db_default=Now())
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)
    resolution = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["trigger"],
                condition=Q(state="open"),
                name="incident_one_open_per_trigger",
            )
        ]
        permissions = [("resolve_incident", "Can resolve an incident (and lower its flag)")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.trigger} ({self.state})"


class GuardSwitch(models.Model):
    """The last GUARD_ENABLED value the guard saw, so that turning it off (or on) in the
    environment is written to the audit chain once, by the first run that notices."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    enabled = models.BooleanField()
    changed_at = models.DateTimeField(db_default=Now())

    def __str__(self) -> str:
        return f"guard {'enabled' if self.enabled else 'disabled'}"


class Measurement(models.Model):
    """A counter of one bucket (`resolution` seconds starting at the Unix time `bucket`).
    Written only by `INSERT … ON CONFLICT DO UPDATE SET value = value + excluded.value`, so
    every process and node adds to the same row."""

    resolution = models.PositiveIntegerField()
    bucket = models.BigIntegerField()
    field = models.CharField(max_length=32)
    value = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["resolution", "bucket", "field"], name="measurement_bucket_field"
            )
        ]

    def __str__(self) -> str:
        return f"{self.field}@{self.bucket}/{self.resolution}s={self.value}"
