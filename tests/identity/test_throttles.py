"""Intake throttles: per client for bearer callers, per source for webhooks, each 429 with
Retry-After; one caller's excess never throttles another."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from identity.throttles import IntakeThrottle, WebhookThrottle
from tests.identity.support import Partners, body_of

MakeEvent = Callable[..., dict[str, Any]]


@pytest.fixture
def two_per_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    # DRF reads the rates when the class is defined; set the rate on the classes instead.
    monkeypatch.setattr(IntakeThrottle, "rate", "2/min", raising=False)
    monkeypatch.setattr(WebhookThrottle, "rate", "2/min", raising=False)


def test_it_throttles_each_client_with_retry_after(
    two_per_minute: None, alice: Any, bob: Any, make_event: MakeEvent
) -> None:
    codes = [alice.post_event(make_event(f"evt-{n}")).status_code for n in range(3)]
    assert codes == [202, 202, 429]
    throttled = alice.post_event(make_event("evt-9"))
    assert throttled.json()["error"] == "throttled"
    assert int(throttled["Retry-After"]) > 0
    assert bob.post_event(make_event("evt-1")).status_code == 202


def test_it_throttles_each_webhook_source_with_retry_after(
    two_per_minute: None, partners: Partners, make_event: MakeEvent
) -> None:
    acme, globex = partners.acme, partners.globex
    body = body_of(make_event)
    codes = [acme.send(body, message_id=f"msg_{n}").status_code for n in range(3)]
    assert codes == [202, 202, 429]
    assert int(acme.send(body, message_id="msg_9")["Retry-After"]) > 0
    assert globex.send(body, message_id="msg_1").status_code == 202


def test_it_counts_only_signed_webhooks_against_a_source(
    two_per_minute: None, partners: Partners, make_event: MakeEvent
) -> None:
    body = body_of(make_event)
    unsigned = {
        "HTTP_WEBHOOK_ID": "msg_x",
        "HTTP_WEBHOOK_TIMESTAMP": "1",
        "HTTP_WEBHOOK_SIGNATURE": "v1,AA==",
    }
    for _ in range(3):
        response = APIClient().post(
            "/api/v1/webhooks/acme",
            data=json.dumps({}),
            content_type="application/json",
            **unsigned,
        )
        assert response.status_code == 401
    assert partners.acme.send(body, message_id="msg_1").status_code == 202
