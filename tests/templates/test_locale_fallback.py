"""template_for: exact locale, language, same language elsewhere, en, any."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from templates.selectors import template_for
from templates.services import template_create


def _make(locale: str, key: str = "welcome") -> None:
    template_create(key=key, channel="sms", locale=locale, body=f"[{locale}] hi")


def _locale(key: str, wanted: str | None) -> str | None:
    template = template_for(key=key, locale=wanted)
    return template.locale if template else None


@pytest.fixture
def welcome(db):
    for locale in ("en", "pt", "pt-BR", "fr-CA", "de"):
        _make(locale)


@pytest.mark.parametrize(
    ("wanted", "found"),
    [
        ("pt-BR", "pt-BR"),
        ("pt-br", "pt-BR"),
        ("PT_br", "pt-BR"),
        ("pt-PT", "pt"),
        ("pt", "pt"),
        ("fr", "fr-CA"),
        ("fr-FR", "fr-CA"),
        ("DE", "de"),
        ("es-MX", "en"),
        (None, "en"),
        ("", "en"),
    ],
)
def test_it_picks_the_best_locale(welcome, wanted, found):
    assert _locale("welcome", wanted) == found


def test_it_falls_back_to_another_english(db):
    _make("en-GB", key="bye")
    _make("ar", key="bye")
    assert _locale("bye", "ja") == "en-GB"


def test_it_falls_back_to_any_locale_in_a_stable_order(db):
    _make("nl", key="only")
    _make("es", key="only")
    assert _locale("only", "ja") == "es"


def test_it_returns_none_for_an_unknown_key(welcome):
    assert template_for(key="nope", locale="en") is None


def test_it_refuses_two_locales_differing_only_in_case(db):
    _make("pt-BR")
    with pytest.raises(ValidationError) as caught:
        _make("pt_br")
    assert "locale" in caught.value.message_dict
