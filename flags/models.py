"""Feature flags set by operators, and the audit of every change."""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now


class Flag(models.Model):
    """The operator-set value of a flag. A flag without a row has its env or default value;
    the effective value also depends on the environment (see flags/services.py)."""

    name = models.CharField(max_length=50, primary_key=True)
    value = models.BooleanField()
    updated_at = models.DateTimeField(db_default=Now())
    updated_by = models.CharField(max_length=150, blank=True)
    reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name}={'on' if self.value else 'off'}"


class FlagSource(models.TextChoices):
    ADMIN = "admin"
    COMMAND = "command"
    GUARD = "guard"  # the automatic SLO guard
    API = "api"


class FlagChange(models.Model):
    """Append-only: who changed which flag, when, why, from what to what."""

    name = models.CharField(max_length=50)
    old_value = models.BooleanField(null=True)
    new_value = models.BooleanField()
    effective_value = models.BooleanField(help_text="The value in force after the change.")
    source = models.CharField(max_length=20, choices=FlagSource.choices)
    actor = models.CharField(max_length=150)
    reason = models.CharField(max_length=500)
    at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["name", "at"], name="flagchange_name_at")]

    def __str__(self) -> str:
        return f"{self.name}: {self.old_value} -> {self.new_value}"
