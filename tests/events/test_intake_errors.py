"""Every way a request to POST /api/v1/events can be wrong: a precise 4xx, nothing stored."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from audit.models import AuditRecord
from events.models import Event
from identity.auth import issue_access_token


@pytest.fixture(autouse=True)
def _nothing_stored(db):
    yield
    # Every test here sends only bad requests: none may leave an event behind.
    assert Event.objects.count() == 0
    assert not AuditRecord.objects.filter(kind="event.received").exists()


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error", "detail", "request_id"}
    assert body["error"] == code
    assert body["request_id"] == response["X-Request-ID"]
    return body


def test_it_rejects_malformed_json_with_400(alice):
    assert_error(alice.post_event('{"event_type": '), 400, "malformed_json")


def test_it_rejects_a_json_array_body_with_400(alice):
    assert_error(alice.post_event("[1, 2]"), 400, "malformed_json")


def test_it_rejects_deeply_nested_json_with_400(alice):
    assert_error(alice.post_event("[" * 20000 + "]" * 20000), 400, "malformed_json")


def test_it_rejects_nesting_below_the_parser_limit_but_over_ours(alice, make_event):
    deep: dict = {}
    node = deep
    for _ in range(30):
        node["x"] = {}
        node = node["x"]
    body = assert_error(alice.post_event(make_event(data=deep)), 400, "invalid_fields")
    assert "nested deeper" in body["detail"]["body"][0]


def test_it_rejects_nan_with_400(alice, make_event):
    raw = json.dumps(make_event()).replace('"STEM Futures"', "NaN")
    assert_error(alice.post_event(raw), 400, "malformed_json")


def test_it_rejects_a_nul_character_with_400(alice, make_event):
    body = assert_error(alice.post_event(make_event(data={"x": "a\u0000b"})), 400, "invalid_fields")
    assert body["detail"]["body"] == ["data.x: contains a NUL character"]


def test_it_rejects_a_lone_surrogate_with_400(alice, make_event):
    raw = json.dumps(make_event(data={"x": "PLACEHOLDER"})).replace("PLACEHOLDER", "\\ud800")
    body = assert_error(alice.post_event(raw), 400, "invalid_fields")
    assert "surrogate" in body["detail"]["body"][0]


def test_it_rejects_invalid_utf8_with_400(alice):
    response = alice.client.post(
        "/api/v1/events", data=b'{"a": "\xff"}', content_type="application/json"
    )
    assert_error(response, 400, "malformed_json")


def test_it_names_each_invalid_field(alice, make_event):
    bad = make_event(
        sequence=0,
        recipient={"id": "", "email": "not-an-address", "phone": "12345"},
        data=["not", "an", "object"],
    )
    detail = assert_error(alice.post_event(bad), 400, "invalid_fields")["detail"]
    assert set(detail) == {"sequence", "recipient", "data"}
    assert set(detail["recipient"]) == {"id", "email", "phone"}


def test_it_requires_an_address(alice, make_event):
    detail = assert_error(
        alice.post_event(make_event(recipient={"id": "s-1"})), 400, "invalid_fields"
    )["detail"]
    assert "email or a phone" in json.dumps(detail)


def test_it_requires_an_idempotency_key(alice, make_event):
    body = make_event()
    del body["idempotency_key"]
    detail = assert_error(alice.post_event(body), 400, "invalid_fields")["detail"]
    assert list(detail) == ["idempotency_key"]


def test_it_rejects_a_key_that_differs_between_body_and_header(alice, make_event):
    response = alice.post_event(make_event(key="a"), HTTP_IDEMPOTENCY_KEY="b")
    assert list(assert_error(response, 400, "invalid_fields")["detail"]) == ["idempotency_key"]


def test_it_rejects_unknown_fields(alice, make_event):
    detail = assert_error(alice.post_event(make_event(sequnce=2)), 400, "invalid_fields")["detail"]
    assert detail == {"sequnce": ["Unknown field."]}


def test_it_answers_422_naming_the_known_event_types(alice, make_event):
    body = assert_error(alice.post_event(make_event(event_type="nope")), 422, "unknown_event_type")
    message = body["detail"]["event_type"][0]
    assert "deadline_soon" in message
    assert "new_match" in message


def test_it_answers_415_for_a_form_body(alice):
    response = alice.client.post("/api/v1/events", data={"event_type": "deadline_soon"})
    assert_error(response, 415, "unsupported_media_type")


def test_it_answers_413_for_an_oversized_body(alice, make_event, settings):
    settings.MAX_EVENT_BYTES = 2048
    big = make_event(data={"blob": "x" * 4096})
    assert_error(alice.post_event(big), 413, "payload_too_large")


def test_it_answers_413_when_the_body_exceeds_djangos_own_limit(alice, settings):
    raw = json.dumps({"blob": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)})
    assert_error(alice.post_event(raw), 413, "payload_too_large")


def test_it_answers_401_without_a_token(alice, make_event):
    response = APIClient().post(
        "/api/v1/events", data=json.dumps(make_event()), content_type="application/json"
    )
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_it_answers_401_for_a_forged_token(alice, make_event):
    header, payload, _ = alice.token.split(".")
    alice.client.credentials(HTTP_AUTHORIZATION=f"Bearer {header}.{payload}.AAAA")
    assert_error(alice.post_event(make_event()), 401, "invalid_token")


def test_it_answers_401_for_an_expired_token(alice, make_event):
    token = issue_access_token(alice.account, ["events:write"])
    token.set_exp(lifetime=-timedelta(seconds=5))
    alice.client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert_error(alice.post_event(make_event()), 401, "expired")


def test_it_answers_401_for_a_malformed_authorization_header(alice, make_event):
    alice.client.credentials(HTTP_AUTHORIZATION="Token abc")
    assert_error(alice.post_event(make_event()), 401, "malformed")


def test_it_answers_401_for_a_token_signed_with_another_key(alice, make_event, settings):
    token = AccessToken()
    token["sub"] = alice.client_id
    token["scope"] = "events:write"
    # Sign with a different key by encoding through PyJWT directly.
    import jwt

    forged = jwt.encode(dict(token.payload), "another-key-" + "x" * 40, algorithm="HS256")
    alice.client.credentials(HTTP_AUTHORIZATION=f"Bearer {forged}")
    assert_error(alice.post_event(make_event()), 401, "invalid_token")


def test_it_answers_403_without_the_write_scope(reader, make_event):
    assert_error(reader.post_event(make_event()), 403, "forbidden")


def test_it_answers_429_with_retry_after_when_throttled(alice, make_event, monkeypatch):
    from identity.throttles import IntakeThrottle

    monkeypatch.setattr(IntakeThrottle, "rate", "2/min")
    alice.post_event("{")
    alice.post_event("{")
    response = alice.post_event(make_event())
    assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0
