"""Writes of support routing: rules (audited like every operator change) and the rule
preview of the admin."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from django.db import transaction
from django.db.models.functions import Now
from django.forms.models import model_to_dict

from audit.services import audit_append
from support.classifier import (
    Classification,
    TicketFacts,
    classification_of,
    classifier,
    rule_matches,
)
from support.models import Rule

RULE_FIELDS = (
    "name",
    "priority",
    "enabled",
    "keywords",
    "match",
    "scope",
    "channels",
    "requires_order_number",
    "intent",
    "tags",
    "team",
    "reply_template",
)


def rule_create(*, actor: str, **fields: Any) -> Rule:
    """A new classification rule, audited."""
    rule = Rule(**fields)
    rule.full_clean()
    return rule_save(rule=rule, actor=actor, created=True)


def rule_save(
    *, rule: Rule, actor: str, created: bool, changed: Iterable[str] = RULE_FIELDS
) -> Rule:
    """Insert a new rule or save an edited one (the admin's form), audited with the fields
    it set or changed."""
    fields = [name for name in changed if name in RULE_FIELDS]
    with transaction.atomic():
        if created:
            rule.save(force_insert=True)
        else:
            rule.updated_at = Now()
            rule.save(update_fields=[*fields, "updated_at"])
        audit_append(
            kind="support.rule_created" if created else "support.rule_changed",
            actor=actor,
            data={"rule": rule.pk, "fields": model_to_dict(rule, fields=fields)},
        )
    return rule


def rule_delete(*, rule: Rule, actor: str) -> None:
    with transaction.atomic():
        audit_append(
            kind="support.rule_deleted", actor=actor, data={"rule": rule.pk, "name": rule.name}
        )
        rule.delete()


def rule_preview(*, rule: Rule, facts: TicketFacts) -> dict[str, Any]:
    """What `rule` alone makes of a sample ticket, and what the whole rule set makes of it
    (another rule of higher priority may win). Writes nothing."""
    mine: Classification | None = classification_of(rule) if rule_matches(rule, facts) else None
    winner = classifier().classify(facts)
    return {
        "matches": mine is not None,
        "classification": asdict(mine) if mine else None,
        "overall": asdict(winner),
        "wins": mine is not None and winner.rule_id == rule.pk,
    }
