"""Operator-managed message templates with immutable versions.

A `Template` is the editable head (what the admin changes); every content change creates a
new `TemplateVersion`, and messages point at the version they were rendered from."""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now


class Channel(models.TextChoices):
    EMAIL = "email"
    SMS = "sms"
    HELPDESK = "helpdesk"  # a reply posted on a helpdesk ticket (support/)


class Category(models.TextChoices):
    TRANSACTIONAL = "transactional"
    PROMOTIONAL = "promotional"


class Tier(models.IntegerChoices):
    ROUTE_ONLY = 0, "0 — route only"
    SAFE_INTAKE = 1, "1 — safe intake"
    VERIFIED_DATA = 2, "2 — needs verified data"


class Template(models.Model):
    key = models.SlugField(max_length=100, help_text="e.g. deadline_soon_email")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    locale = models.CharField(max_length=35, default="en")
    category = models.CharField(
        max_length=20, choices=Category.choices, default=Category.TRANSACTIONAL
    )
    tier = models.PositiveSmallIntegerField(choices=Tier.choices, default=Tier.ROUTE_ONLY)
    enabled = models.BooleanField(default=True)
    whitelisted = models.BooleanField(default=False)
    description = models.CharField(max_length=255, blank=True)
    subject = models.CharField(max_length=255, blank=True, help_text="Email only.")
    body = models.TextField(help_text="Plain-text email body, or the SMS text.")
    html = models.TextField(blank=True, help_text="Optional HTML email body.")
    sample_data = models.JSONField(
        default=dict,
        blank=True,
        help_text="A JSON object like an event's data, used for the admin preview.",
    )
    current_version = models.ForeignKey(
        "TemplateVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["key", "locale"]
        constraints = [
            models.UniqueConstraint(fields=["key", "locale"], name="template_key_locale"),
        ]

    def __str__(self) -> str:
        return f"{self.key} [{self.locale}]"


class TemplateVersion(models.Model):
    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    subject = models.CharField(max_length=255, blank=True)
    body = models.TextField()
    html = models.TextField(blank=True)
    content_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(db_default=Now())
    created_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["template", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["template", "number"], name="template_version_number"),
        ]

    def __str__(self) -> str:
        return f"{self.template} v{self.number}"
