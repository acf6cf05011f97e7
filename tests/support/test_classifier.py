"""Classification rules: priority order, any/all keywords on whole words (case- and
accent-insensitive), subject/body scope, field conditions; no match is `other` for triage;
the classifier is a provider chosen by setting."""

from __future__ import annotations

import pytest

from support.classifier import Classification, Classifier, TicketFacts, classifier
from support.models import Rule
from support.services import rule_create


def facts(subject: str = "", body: str = "", channel: str = "email", **more) -> TicketFacts:
    return TicketFacts(subject=subject, body=body, channel=channel, **more)


def rule(name: str = "r", **fields) -> Rule:
    spec = {"priority": 10, "intent": "returns", "keywords": "refund"} | fields
    return rule_create(name=name, actor="test", **spec)


@pytest.mark.parametrize(
    ("keywords", "text", "matches"),
    [
        ("refund", "I want a REFUND.", True),
        ("réclamation", "Ma reclamation", True),
        ("reclamation", "Ma RÉCLAMATION", True),
        ("app", "Apparel sizes", False),
        ("return", "a returning customer", False),
        ("never arrived", "it never\n  arrived!", True),
        ("never arrived", "never, arrived", False),
        ("didn't arrive", "My parcel didn't arrive", True),
    ],
)
def test_it_matches_whole_words_ignoring_case_and_accents(db, keywords, text, matches):
    rule(keywords=keywords)
    assert (classifier().classify(facts(body=text)).intent == "returns") is matches


def test_it_needs_every_keyword_in_all_mode_and_one_in_any_mode(db):
    rule("all", keywords="order, cancel", match="all", intent="sales")
    rule("any", keywords="order, cancel", match="any", intent="returns", priority=20)
    assert classifier().classify(facts("Cancel my order")).intent == "sales"
    assert classifier().classify(facts("Cancel it")).intent == "returns"


def test_it_honours_priority_and_skips_disabled_rules(db):
    rule("late", priority=50, intent="returns")
    rule("early", priority=5, intent="sales")
    rule("off", priority=1, intent="missing_items", enabled=False)
    found = classifier().classify(facts(body="refund please"))
    assert (found.intent, found.rule_name) == ("sales", "early")


def test_it_looks_only_where_the_rule_says(db):
    rule(scope="subject", intent="sales")
    assert classifier().classify(facts(subject="hello", body="refund")).intent == "other"
    assert classifier().classify(facts(subject="refund", body="hello")).intent == "sales"


def test_it_applies_field_conditions(db):
    rule("social", keywords="", channels="Instagram, facebook", intent="other", tags="social")
    rule("numbered", keywords="", requires_order_number=True, intent="order_status", priority=20)
    assert classifier().classify(facts(channel="instagram")).tags == ["social"]
    assert classifier().classify(facts(body="about 10023")).intent == "order_status"
    assert classifier().classify(facts(order_number="A-1")).intent == "order_status"
    assert classifier().classify(facts(body="about 12")).rule_name == ""


def test_it_tags_an_unmatched_ticket_for_triage(db):
    rule()
    found = classifier().classify(facts("Hello", "Thanks!"))
    assert (found.intent, found.tags, found.team, found.rule_id) == (
        "other",
        ["needs-triage"],
        "",
        None,
    )


class EverythingIsSales(Classifier):
    def classify(self, facts: TicketFacts) -> Classification:
        return Classification(intent="sales", tags=["plugged-in"], team="Sales")


def test_it_uses_the_classifier_named_in_the_settings(db, settings):
    rule()
    settings.SUPPORT_CLASSIFIER = "tests.support.test_classifier.EverythingIsSales"
    assert classifier().classify(facts(body="refund")).tags == ["plugged-in"]
    settings.SUPPORT_CLASSIFIER = "support.models.Rule"
    with pytest.raises(Exception, match="not a Classifier class"):
        classifier()
