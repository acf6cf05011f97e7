"""INTAKE_PAUSED: the intake and the webhooks answer 503 intake_paused with Retry-After and
store nothing; the canary says degraded; the API schema documents it."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from comcenter.health import health_forget
from comcenter.lib.latency import ack_latency_forget
from comcenter.ops import canary_status
from events.models import Event
from flags.models import FlagSource
from flags.services import flag_set
from tests.identity.support import Partner, body_of, new_secret


def _pause(value: bool = True) -> None:
    flag_set(
        name="INTAKE_PAUSED", value=value, actor="olivia", reason="drill", source=FlagSource.ADMIN
    )


def _paused_count() -> float:
    value = REGISTRY.get_sample_value(
        "comcenter_events_total", {"outcome": "rejected", "reason": "intake_paused"}
    )
    return value or 0.0


def test_it_refuses_events_and_stores_nothing(alice, make_event) -> None:
    _pause()
    before = _paused_count()
    response = alice.post_event(make_event("paused-1"))
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "intake_paused"
    assert response["Retry-After"] == "30"
    assert not Event.objects.exists()
    assert _paused_count() == before + 1


def test_it_refuses_before_authentication(client, event_types) -> None:
    _pause()
    response = client.post(
        "/api/v1/events", data="{}", content_type="application/json", HTTP_AUTHORIZATION="Bearer x"
    )
    assert response.status_code == 503
    assert response.json()["error"] == "intake_paused"


def test_it_accepts_again_when_lifted(alice, make_event) -> None:
    _pause()
    assert alice.post_event(make_event("paused-2")).status_code == 503
    _pause(False)
    assert alice.post_event(make_event("paused-2")).status_code == 202
    assert Event.objects.count() == 1


def test_it_refuses_signed_webhooks(settings, event_types, make_event) -> None:
    secret = new_secret()
    settings.WEBHOOK_SECRETS_RAW = f"acme={secret}"
    _pause()
    response = Partner("acme", secret).send(body_of(make_event))
    assert response.status_code == 503
    assert response.json()["error"] == "intake_paused"
    assert response["Retry-After"] == "30"
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_it_makes_the_canary_degraded(client) -> None:
    # Earlier tests' acks (a slow P95) and health report would decide the status otherwise.
    ack_latency_forget()
    health_forget()
    assert client.get("/canary").json()["status"] == "ok"
    _pause()
    assert client.get("/canary").json()["status"] == "degraded"
    assert (
        canary_status(database_ok=True, dependencies_ok=True, p95_ms=None, intake_paused=True)
        == "degraded"
    )


@pytest.mark.django_db
def test_it_documents_the_503_in_the_schema(client) -> None:
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    intake = schema["paths"]["/api/v1/events"]["post"]["responses"]["503"]["description"]
    hooks = schema["paths"]["/api/v1/webhooks/{source}"]["post"]["responses"]["503"]
    assert "intake_paused" in intake
    assert "intake_paused" in hooks["description"]
