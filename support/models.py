"""Support routing: the operators' classification rules and the tickets they classified.

A `Ticket` is written once, by the delivery pipeline's expansion of a `ticket.created` event
(support/hooks.py): its intent, tags, team, the reply it planned and the order match are the
facts the routing and reply messages, the lineage and the metrics are built from."""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now

from events.models import Event


class Intent(models.TextChoices):
    SALES = "sales"
    RETURNS = "returns"
    TECHNICAL_SUPPORT = "technical_support"
    ORDER_STATUS = "order_status"
    DELIVERED_NOT_RECEIVED = "delivered_not_received"
    MISSING_ITEMS = "missing_items"
    OTHER = "other"


class Rule(models.Model):
    """One classification rule. Rules are tried by ascending priority; the first that matches
    gives the ticket its intent, tags, team and reply template."""

    class Match(models.TextChoices):
        ANY = "any", "any keyword"
        ALL = "all", "all keywords"

    class Scope(models.TextChoices):
        SUBJECT_AND_BODY = "both", "subject and body"
        SUBJECT = "subject", "subject only"
        BODY = "body", "body only"

    name = models.CharField(max_length=100, unique=True)
    priority = models.PositiveIntegerField(default=100, help_text="Lowest is tried first.")
    enabled = models.BooleanField(default=True)
    keywords = models.TextField(
        blank=True,
        help_text=(
            "One keyword or phrase per line (or comma-separated). Whole words, case- and "
            "accent-insensitive. Empty: the rule matches on its field conditions alone."
        ),
    )
    match = models.CharField(max_length=3, choices=Match.choices, default=Match.ANY)
    scope = models.CharField(max_length=7, choices=Scope.choices, default=Scope.SUBJECT_AND_BODY)
    channels = models.CharField(
        max_length=200,
        blank=True,
        help_text="Field condition: the ticket's channel is one of these (comma-separated); "
        "empty: any channel.",
    )
    requires_order_number = models.BooleanField(
        default=False,
        help_text="Field condition: the ticket carries an order number (field, subject or body).",
    )
    intent = models.CharField(max_length=30, choices=Intent.choices)
    tags = models.CharField(max_length=500, blank=True, help_text="Comma-separated.")
    team = models.CharField(max_length=100, blank=True)
    reply_template = models.SlugField(
        max_length=100,
        blank=True,
        help_text="Key of the helpdesk reply template for this rule's tickets; empty: no reply.",
    )
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["priority", "id"]

    def __str__(self) -> str:
        return self.name


class Ticket(models.Model):
    """A helpdesk ticket as classified. One per (caller, helpdesk ticket id): a repeated
    `ticket.created` for the same ticket routes nothing a second time."""

    event = models.OneToOneField(Event, on_delete=models.CASCADE, related_name="ticket")
    caller = models.CharField(max_length=300)
    ticket_id = models.CharField(max_length=100)
    channel = models.CharField(max_length=30)
    intent = models.CharField(max_length=30, choices=Intent.choices)
    rule = models.ForeignKey(Rule, null=True, blank=True, on_delete=models.SET_NULL)
    rule_name = models.CharField(max_length=100, blank=True)
    tags = models.JSONField(default=list)
    team = models.CharField(max_length=100, blank=True)
    # The reply planned at classification (after the tier-2 match), empty for none.
    reply_template = models.SlugField(max_length=100, blank=True)
    reply_tier = models.PositiveSmallIntegerField(null=True, blank=True)
    # Tier 2 only: whether the deterministic order match held, and which order it found.
    order_match = models.BooleanField(null=True, blank=True)
    matched_order = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["caller", "ticket_id"], name="ticket_unique"),
        ]
        indexes = [models.Index(fields=["intent"], name="ticket_intent")]

    def __str__(self) -> str:
        return f"ticket {self.ticket_id}"
