"""Property tests (hypothesis) of the intake's body parser and of the idempotency-key rule:
whatever the bytes, the parser returns the JSON object or refuses with a 4xx ApiError, never
anything else; a key is accepted exactly when it follows the one rule, and is then used as
sent, byte for byte, wherever it came from (body or header)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import RequestFactory
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from comcenter.lib.errors import ApiError
from comcenter.lib.wire import IDEMPOTENCY_KEY
from events.intake import parse_json_body, validate_event
from events.models import Event
from events.services import event_accept, event_type_ensure

MAX_BYTES = 4096
factory = RequestFactory()
# No per-example deadline: the machine is shared, and speed is the benchmarks' business.
quick = settings(deadline=None, max_examples=200)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)


def parse(raw: bytes) -> dict[str, Any]:
    request = factory.post("/api/v1/events", data=raw, content_type="application/json")
    return parse_json_body(request, max_bytes=MAX_BYTES)


def storable(value: Any) -> bool:
    text = json.dumps(value)
    return "\\u0000" not in text and "\\ud8" not in text and "\\udc" not in text.lower()


@quick
@given(st.binary(max_size=600))
@example(b'{"a": 1, "a": 2}')
@example(b'{"\\udcff": 1}')
@example(b"[" * 5000)
@example(b'{"a": NaN}')
@example(b"\xff\xfe")
def test_it_parses_any_bytes_into_an_object_or_a_4xx(raw: bytes) -> None:
    try:
        parsed: Any = parse(raw)
    except ApiError as exc:
        parsed = exc
    if isinstance(parsed, ApiError):
        assert 400 <= parsed.status_code < 500
        json.dumps(parsed.detail_value).encode("utf-8")  # the error itself is encodable
    else:
        assert isinstance(parsed, dict)


@quick
@given(json_objects)
def test_it_returns_every_storable_object_as_sent(value: dict[str, Any]) -> None:
    raw = json.dumps(value).encode()
    if len(raw) > MAX_BYTES or not storable(value):
        return
    assert parse(raw) == value


@quick
@given(st.text(max_size=8), json_values, json_values)
def test_it_refuses_any_member_named_twice(name: str, first: Any, second: Any) -> None:
    inner = json.dumps({name: first})[1:-1] + ", " + json.dumps({name: second})[1:-1]
    raw = ("{" + inner + "}").encode()
    nested = json.dumps({"outer": "x"})[:-1].encode() + b', "data": ' + raw + b"}"
    for body in (raw, nested):
        with pytest.raises(ApiError) as caught:
            parse(body)
        assert caught.value.status_code in (400, 413)


@pytest.fixture
def known_type(db: Any) -> str:
    event_type_ensure(name="deadline_soon")
    return "deadline_soon"


def event(**extra: Any) -> dict[str, Any]:
    return {
        "event_type": "deadline_soon",
        "recipient": {"id": "r-1", "email": "a@example.org"},
        **extra,
    }


def outcome(body: dict[str, Any], header: str | None) -> str | int:
    try:
        return validate_event(body, header)[1]
    except ApiError as exc:
        return exc.status_code


KEY_CHARS = st.characters(codec="utf-8", exclude_characters="\x00")
keys = st.text(KEY_CHARS, min_size=1, max_size=260) | st.from_regex(IDEMPOTENCY_KEY)


@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300, deadline=None
)
@given(key=keys)
@example(key="café")
@example(key="cafe\u0301")
@example(key=" k")
@example(key="k1,k2")
@example(key="k" * 256)
def test_it_accepts_a_key_exactly_when_it_follows_the_rule(known_type: str, key: str) -> None:
    follows = all(0x21 <= ord(c) <= 0x7E and c != "," for c in key) and len(key) <= 255
    in_body = outcome(event(idempotency_key=key), None)
    in_header = outcome(event(), key)
    both = outcome(event(idempotency_key=key), key)
    if follows:
        assert in_body == in_header == both == key  # as sent: never trimmed or normalised
    else:
        assert in_body == in_header == both == 400


@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    max_examples=60,
    deadline=None,
)
@given(first=st.from_regex(IDEMPOTENCY_KEY), second=st.from_regex(IDEMPOTENCY_KEY))
def test_it_makes_one_event_per_distinct_key_and_one_for_a_repeated_key(
    known_type: str, first: str, second: str
) -> None:
    Event.objects.all().delete()
    payload, _ = validate_event(event(), first)
    ids = {
        event_accept(
            caller="sa:alice", payload=payload, idempotency_key=key, request_id="r"
        ).event.uid
        for key in (first, second, first)
    }
    assert len(ids) == (1 if first == second else 2)
