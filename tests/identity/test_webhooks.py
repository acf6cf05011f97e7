"""Signed webhooks (Standard Webhooks): signatures made by the reference library
`standardwebhooks` are accepted; tampering, stale timestamps, malformed headers, unknown
sources and oversized bodies are refused without a 500."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from events.models import Event
from tests.identity.support import Partners, body_of

MakeEvent = Callable[..., dict[str, Any]]


def failures(reason: str) -> float:
    return REGISTRY.get_sample_value("comcenter_auth_failures_total", {"reason": reason}) or 0.0


def test_it_accepts_a_signed_event_as_the_source(partners: Partners, make_event: MakeEvent) -> None:
    response = partners.acme.send(body_of(make_event), message_id="msg_1")
    assert response.status_code == 202, response.content
    event = Event.objects.get(uid=response.json()["id"])
    assert (event.caller, event.idempotency_key) == ("webhook:acme", "msg_1")
    assert event.status == "accepted"


def test_it_answers_a_replayed_id_as_a_duplicate(partners: Partners, make_event: MakeEvent) -> None:
    body = body_of(make_event)
    first = partners.acme.send(body, message_id="msg_1")
    replay = partners.acme.send(body, message_id="msg_1")
    assert (first.status_code, replay.status_code) == (202, 200)
    assert replay.json()["duplicate"] is True
    assert replay.json()["id"] == first.json()["id"]
    assert Event.objects.count() == 1


def test_it_answers_409_to_a_reused_id_with_another_body(
    partners: Partners, make_event: MakeEvent
) -> None:
    assert partners.acme.send(body_of(make_event), message_id="msg_1").status_code == 202
    other = body_of(make_event, data={"scholarship": "Other"})
    response = partners.acme.send(other, message_id="msg_1")
    assert response.status_code == 409
    assert response.json()["error"] == "idempotency_conflict"


def test_it_scopes_ids_to_the_source(partners: Partners, make_event: MakeEvent) -> None:
    body = body_of(make_event)
    assert partners.acme.send(body, message_id="msg_1").status_code == 202
    assert partners.globex.send(body, message_id="msg_1").status_code == 202
    assert Event.objects.count() == 2


def test_it_refuses_a_tampered_body(partners: Partners, make_event: MakeEvent) -> None:
    body = body_of(make_event)
    headers = partners.acme.headers(body)
    tampered = body.replace("STEM Futures", "STEM Futures!")
    before = failures("webhook_bad_signature")
    response = partners.acme.post(tampered, **headers)
    assert response.status_code == 401
    assert response.json()["error"] == "bad_signature"
    assert failures("webhook_bad_signature") == before + 1
    assert not Event.objects.exists()


@pytest.mark.parametrize("minutes", [-6, 6])
def test_it_refuses_a_timestamp_six_minutes_off(
    minutes: int, partners: Partners, make_event: MakeEvent
) -> None:
    at = datetime.now(UTC) + timedelta(minutes=minutes)
    response = partners.acme.send(body_of(make_event), at=at)
    assert response.status_code == 401
    assert response.json()["error"] == "stale_timestamp"


@pytest.mark.parametrize("minutes", [-4, 4])
def test_it_accepts_a_timestamp_within_five_minutes(
    minutes: int, partners: Partners, make_event: MakeEvent
) -> None:
    at = datetime.now(UTC) + timedelta(minutes=minutes)
    assert partners.acme.send(body_of(make_event), at=at).status_code == 202


def test_it_accepts_every_secret_of_a_source_during_rotation(
    partners: Partners, make_event: MakeEvent
) -> None:
    acme = partners.acme
    old = acme.send(body_of(make_event), message_id="msg_old")
    new = acme.send(body_of(make_event), message_id="msg_new", secret=partners.acme_next_secret)
    assert (old.status_code, new.status_code) == (202, 202)
    foreign = acme.send(body_of(make_event), message_id="msg_x", secret=partners.globex.secret)
    assert foreign.status_code == 401


def test_it_accepts_a_header_with_several_signatures(
    partners: Partners, make_event: MakeEvent
) -> None:
    body = body_of(make_event)
    headers = partners.acme.headers(body)
    wrong = "v1," + base64.b64encode(secrets.token_bytes(32)).decode()
    headers["HTTP_WEBHOOK_SIGNATURE"] = (
        f"{wrong} v1a,c2lnbmF0dXJl {headers['HTTP_WEBHOOK_SIGNATURE']}"
    )
    assert partners.acme.post(body, **headers).status_code == 202


MALFORMED: dict[str, Callable[[dict[str, str]], None]] = {
    "signature without a comma": lambda h: h.update(
        HTTP_WEBHOOK_SIGNATURE=h["HTTP_WEBHOOK_SIGNATURE"].replace(",", "")
    ),
    "signature not base64": lambda h: h.update(HTTP_WEBHOOK_SIGNATURE="v1,@@not*base64@@"),
    "signature of the wrong length": lambda h: h.update(HTTP_WEBHOOK_SIGNATURE="v1,c2ln"),
    "only another version": lambda h: h.update(HTTP_WEBHOOK_SIGNATURE="v2,c2lnbmF0dXJl"),
    "signature missing": lambda h: h.pop("HTTP_WEBHOOK_SIGNATURE"),
    "empty signature": lambda h: h.update(HTTP_WEBHOOK_SIGNATURE=""),
    "id missing": lambda h: h.pop("HTTP_WEBHOOK_ID"),
    "id with a space": lambda h: h.update(HTTP_WEBHOOK_ID="msg 1"),
    "id over 255 characters": lambda h: h.update(HTTP_WEBHOOK_ID="m" * 256),
    "timestamp missing": lambda h: h.pop("HTTP_WEBHOOK_TIMESTAMP"),
    "timestamp not a number": lambda h: h.update(HTTP_WEBHOOK_TIMESTAMP="yesterday"),
    "timestamp with decimals": lambda h: h.update(
        HTTP_WEBHOOK_TIMESTAMP=h["HTTP_WEBHOOK_TIMESTAMP"] + ".5"
    ),
    "huge timestamp": lambda h: h.update(HTTP_WEBHOOK_TIMESTAMP="9" * 400),
    "signature header of 10 KB": lambda h: h.update(HTTP_WEBHOOK_SIGNATURE="v1,AAAA " * 1300),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_it_answers_401_to_malformed_headers(
    case: str, partners: Partners, make_event: MakeEvent
) -> None:
    body = body_of(make_event)
    headers = partners.acme.headers(body)
    MALFORMED[case](headers)
    response = partners.acme.post(body, **headers)
    assert response.status_code == 401, response.content
    assert response.json()["error"] == "malformed"


def test_it_answers_an_unknown_source_like_a_wrong_signature(
    partners: Partners, make_event: MakeEvent
) -> None:
    body = body_of(make_event)
    headers = partners.acme.headers(body)
    before = failures("webhook_unknown_source")
    unknown = partners.acme.post(body, source="initech", **headers)
    wrong = partners.acme.post(body, source="globex", **headers)
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json()["error"] == wrong.json()["error"] == "bad_signature"
    assert unknown.json()["detail"] == wrong.json()["detail"]
    assert failures("webhook_unknown_source") == before + 1


def test_it_refuses_an_oversized_body_before_checking_the_signature(
    partners: Partners, settings: Any, make_event: MakeEvent
) -> None:
    body = body_of(make_event, data={"blob": "x" * settings.MAX_EVENT_BYTES})
    headers = {
        "HTTP_WEBHOOK_ID": "msg_1",
        "HTTP_WEBHOOK_TIMESTAMP": "0",
        "HTTP_WEBHOOK_SIGNATURE": "no signature at all",
    }
    response = partners.acme.post(body, **headers)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


def test_it_refuses_a_body_key_that_contradicts_the_webhook_id(
    partners: Partners, make_event: MakeEvent
) -> None:
    event = make_event("evt-in-body")
    response = partners.acme.send(json.dumps(event), message_id="msg_1")
    assert response.status_code == 400
    assert "idempotency_key" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ("[" * 30000 + "]" * 30000, "application/json", 400),
        ("not json", "application/json", 400),
        ('{"event_type": "deadline_soon"}', "text/plain", 415),
        ('{"event_type": "no_such_type", "recipient": {"id": "r", "email": "a@b.org"}}', None, 422),
    ],
    ids=["deep-nesting", "not-json", "not-json-type", "unknown-type"],
)
def test_it_validates_the_signed_body_like_the_intake(
    body: str, content_type: str | None, status: int, partners: Partners
) -> None:
    headers = partners.acme.headers(body)
    response = APIClient().post(
        "/api/v1/webhooks/acme",
        data=body,
        content_type=content_type or "application/json",
        **headers,
    )
    assert response.status_code == status, response.content
