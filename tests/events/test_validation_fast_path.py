"""The intake's fast paths against the slow ones they stand in for (events/serializers.py):
whatever the body, `internal_value` returns what DRF's `run_validation` returns, in the same
order, or raises the same ValidationError with the same detail, and it does answer the
common body itself; `text_is_storable` lets the storability walk be skipped only for bodies
in which the walk finds nothing."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ValidationError

from events.serializers import (
    MAX_SEQUENCE,
    EventInSerializer,
    _Plain,
    find_unstorable,
    internal_value,
    plain_internal_value,
    text_is_storable,
)

SERIALIZER = EventInSerializer()
quick = settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])

COMMON = {
    "event_type": "deadline_soon",
    "idempotency_key": "scholarship-api:evt-81f3",
    "recipient": {"id": "r-1", "email": "a@example.org"},
    "data": {"n": 1},
}

# Values near every rule: right, padded, empty, blank, too long, of another JSON type.
texts = st.sampled_from(
    ["deadline_soon", " padded ", "", "   ", "x" * 101, "x" * 256, "a\x00b", "ok-1", "7"]
)
others = st.sampled_from([None, True, 7, 7.0, 1.5, [], {}, ["a"], {"a": 1}])
emails = st.sampled_from(["a@example.org", "not-an-email", " a@example.org", "a@b", ""])
phones = st.sampled_from(["+12025550123", "12025550123", "+1 202", ""])
locales = st.sampled_from(["en", "pt-BR", "english!", "x" * 36])
sequences = st.sampled_from([1, 0, -1, MAX_SEQUENCE, MAX_SEQUENCE + 1, "7", 3.0, True, None])
keys = st.sampled_from(["k-1", "evt:81f3", "has space", "", "x" * 300, "ü"])


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return strategy | texts | others


recipients = st.fixed_dictionaries(
    {},
    optional={
        "id": _optional(texts),
        "email": _optional(emails),
        "phone": _optional(phones),
        "locale": _optional(locales),
        "nickname": texts,
    },
)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "event_type": _optional(texts),
        "idempotency_key": _optional(keys),
        "ordering_key": _optional(texts),
        "sequence": _optional(sequences),
        "recipient": recipients | others,
        "data": st.dictionaries(st.text(max_size=4), others, max_size=3) | others,
        "occurred_at": st.sampled_from(["2026-11-21T20:00:00Z", "yesterday"]),
        "sequnce": others,
    },
)


def _outcome(validate: Any, body: dict[str, Any]) -> tuple[str, Any]:
    try:
        result = dict(validate(body))
    except ValidationError as exc:
        return "error", exc.detail
    return "ok", (list(result.items()), list(dict(result.get("recipient") or {}).items()))


@quick
@given(bodies)
@example(COMMON)
@example({**COMMON, "recipient": {"id": "r-1", "locale": "en"}})
@example({**COMMON, "sequence": MAX_SEQUENCE + 1})
@example({**COMMON, "event_type": " deadline_soon"})
@example({**COMMON, "event_type": "deadline\ud800soon"})  # a lone surrogate: refused
@example({**COMMON, "recipient": {"id": "r-\udcff", "email": "a@example.org"}})
@example({**COMMON, "recipient": {"id": "r-é", "email": "a@example.org"}})  # not ASCII, valid
def test_it_answers_exactly_as_the_serializer(body: dict[str, Any]) -> None:
    assert _outcome(lambda b: internal_value(SERIALIZER, b), body) == _outcome(
        SERIALIZER.run_validation, body
    )


def test_it_answers_the_common_body_itself() -> None:
    full = {
        **COMMON,
        "ordering_key": "student-42",
        "sequence": 7,
        "recipient": {
            "id": "r-1",
            "email": "a@example.org",
            "phone": "+12025550123",
            "locale": "en",
        },
    }
    for body in (COMMON, full, {k: v for k, v in COMMON.items() if k != "data"}):
        assert plain_internal_value(SERIALIZER, body) == dict(SERIALIZER.run_validation(body))


@pytest.mark.parametrize(
    "change",
    [
        {"event_type": " deadline_soon "},  # trimmed by the field: the serializer's to do
        {"sequence": "7"},  # a number as text, which the field coerces
        {"occurred_at": "2026-11-21T20:00:00Z"},  # parsed by the field
        {"recipient": {"id": "r-1"}},  # neither email nor phone
        {"unknown": 1},
    ],
)
def test_it_leaves_anything_unusual_to_the_serializer(change: dict[str, Any]) -> None:
    with pytest.raises(_Plain):
        plain_internal_value(SERIALIZER, {**COMMON, **change})


# Values of every kind find_unstorable refuses, among ordinary ones.
hostile = st.sampled_from(["a\x00b", "\udcff", 1e308 * 10, float("nan"), "plain", 1.5, 7])
nested = st.recursive(
    hostile | st.text(max_size=4) | st.integers(),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.text(max_size=3) | hostile.filter(lambda v: isinstance(v, str)), children, max_size=3
        )
    ),
    max_leaves=30,
)


@quick
@given(st.dictionaries(st.text(max_size=4), nested, max_size=4), st.booleans())
@example({"deep": json.loads("[" * 22 + "1" + "]" * 22)}, False)
def test_it_skips_the_storability_walk_only_when_nothing_is_unstorable(
    value: dict[str, Any], ascii_only: bool
) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only).replace("NaN", "1e999")
    text = text.replace("Infinity", "1e999")  # as a client sends one: an overflowing literal
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return  # not a body a client can send: the intake refuses it as invalid UTF-8
    overflowed: list[float] = []

    def hook(literal: str) -> float:
        number = float(literal)
        if not math.isfinite(number):
            overflowed.append(number)
        return number

    parsed = json.loads(text, parse_float=hook)
    if text_is_storable(text, overflowed=bool(overflowed)):
        assert find_unstorable(parsed) is None


def test_it_walks_a_body_that_may_hold_an_unstorable_value() -> None:
    assert text_is_storable('{"a": "b", "n": [1, 2.5]}', overflowed=False)
    assert not text_is_storable('{"a": "\\u0000"}', overflowed=False)
    assert not text_is_storable('{"n": 1e999}', overflowed=True)
    assert not text_is_storable("[" * 21 + "]" * 21, overflowed=False)
