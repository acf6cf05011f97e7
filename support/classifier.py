"""Ticket classification: a pluggable provider (`settings.SUPPORT_CLASSIFIER`), rules first.

Keyword matching is on whole words, case- and accent-insensitive: both the text and the
keyword are folded (NFKD, combining marks dropped, casefolded) and a keyword matches only
where neither neighbour is a letter or digit, so "return" matches "Return?" and "retour"
matches "RETOUR", but "art" does not match "part". A phrase matches its words in order with
any whitespace between them."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from support.models import Intent, Rule

# The one order number written in a ticket's text: a token with at least 5 digits, possibly
# after a letter prefix and a dash (A-10023, #10023, 10023). ASCII digits only.
ORDER_NUMBER = re.compile(r"(?<![0-9A-Za-z])#?([A-Za-z]{0,4}-?[0-9]{5,12})(?![0-9A-Za-z])")
TRIAGE_TAG = "needs-triage"


@dataclass(frozen=True)
class TicketFacts:
    """What a classifier may look at. Never logged: subject, body and email are customer
    data."""

    subject: str
    body: str
    channel: str
    customer_email: str = ""
    order_number: str = ""
    linked_orders: tuple[dict[str, str], ...] = ()

    def __repr__(self) -> str:
        return f"TicketFacts(channel={self.channel!r})"

    @classmethod
    def from_data(cls, data: dict[str, object]) -> TicketFacts:
        customer = data.get("customer")
        email = customer.get("email", "") if isinstance(customer, dict) else ""
        orders = data.get("linked_orders")
        return cls(
            subject=str(data.get("subject") or ""),
            body=str(data.get("body") or ""),
            channel=str(data.get("channel") or ""),
            customer_email=str(email or ""),
            order_number=str(data.get("order_number") or ""),
            linked_orders=tuple(o for o in orders if isinstance(o, dict))
            if isinstance(orders, list)
            else (),
        )

    def order_numbers_in_text(self) -> set[str]:
        return {m.group(1) for m in ORDER_NUMBER.finditer(f"{self.subject}\n{self.body}")}


@dataclass(frozen=True)
class Classification:
    intent: str
    tags: list[str] = field(default_factory=list)
    team: str = ""
    reply_template: str = ""
    rule_id: int | None = None
    rule_name: str = ""


def fold(text: str) -> str:
    """Lower-case, accent-free, single-spaced text for matching."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


@functools.lru_cache(maxsize=2048)
def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in keyword.split()]
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)")


def split_list(value: str) -> list[str]:
    """Items of a comma- or newline-separated field, stripped, empties dropped."""
    return [item.strip() for item in re.split(r"[,\n]", value) if item.strip()]


def keywords_match(*, keywords: Iterable[str], mode: str, text: str) -> bool:
    folded = [fold(k) for k in keywords]
    folded = [k for k in folded if k]
    if not folded:
        return True
    found = (_keyword_pattern(k).search(text) is not None for k in folded)
    return all(found) if mode == Rule.Match.ALL else any(found)


def rule_matches(rule: Rule, facts: TicketFacts) -> bool:
    channels = {c.casefold() for c in split_list(rule.channels)}
    if channels and facts.channel.casefold() not in channels:
        return False
    if rule.requires_order_number and not (facts.order_number or facts.order_numbers_in_text()):
        return False
    parts = {
        Rule.Scope.SUBJECT: [facts.subject],
        Rule.Scope.BODY: [facts.body],
    }.get(rule.scope, [facts.subject, facts.body])  # type: ignore[call-overload]
    text = fold("\n".join(parts))
    return keywords_match(keywords=split_list(rule.keywords), mode=rule.match, text=text)


def classification_of(rule: Rule) -> Classification:
    return Classification(
        intent=rule.intent,
        tags=split_list(rule.tags),
        team=rule.team,
        reply_template=rule.reply_template,
        rule_id=rule.pk,
        rule_name=rule.name,
    )


NO_MATCH = Classification(intent=Intent.OTHER, tags=[TRIAGE_TAG])


class Classifier:
    """A classifier provider. A subclass returns the ticket's classification; it must not
    call the network while the pipeline's expansion transaction is open (it runs there)."""

    def classify(self, facts: TicketFacts) -> Classification:
        raise NotImplementedError


class RuleClassifier(Classifier):
    """The default: the enabled rules of the admin in priority order, first match wins; no
    match is intent `other`, tagged for triage."""

    def classify(self, facts: TicketFacts) -> Classification:
        for rule in Rule.objects.filter(enabled=True).order_by("priority", "id"):
            if rule_matches(rule, facts):
                return classification_of(rule)
        return NO_MATCH


@functools.cache
def _classifier(dotted: str) -> Classifier:
    cls = import_string(dotted)
    if not (isinstance(cls, type) and issubclass(cls, Classifier)):
        raise ImproperlyConfigured(f"SUPPORT_CLASSIFIER: {dotted!r} is not a Classifier class")
    return cls()


def classifier() -> Classifier:
    return _classifier(settings.SUPPORT_CLASSIFIER)


@receiver(setting_changed)
def _classifier_reset(*, setting: str, **kwargs: object) -> None:
    if setting == "SUPPORT_CLASSIFIER":
        _classifier.cache_clear()
