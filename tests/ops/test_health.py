"""/health: per-dependency readiness, 200 or 503, cached, bounded in time."""

from __future__ import annotations

import pytest
from django.test import Client

from comcenter.health import health_report
from delivery.providers.registry import all_providers
from flags.models import FlagSource
from flags.services import flag_set
from tests.ops.conftest import redis_cache_at

pytestmark = pytest.mark.django_db


def test_it_answers_200_with_every_configured_check(client: Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert {"database", "broker", "cache"} <= set(body["checks"])
    assert all(check["ok"] for check in body["checks"].values())
    assert "jwks" not in body["checks"]  # JWKS_URL is unset: not checked, not a failure


def test_it_lists_each_provider(client: Client) -> None:
    checks = client.get("/health").json()["checks"]
    for provider in all_providers():
        assert checks[f"provider:{provider.channel}"]["provider"] == provider.name


def test_it_answers_503_when_the_cache_refuses_connections(
    client: Client, settings, closed_port: int
) -> None:
    settings.CACHES = redis_cache_at(closed_port)
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["checks"]["cache"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True


def test_it_gives_up_on_a_hung_dependency(client: Client, settings, silent_port: int) -> None:
    # The client would wait 2 s for an answer; the report gives up well before.
    settings.CACHES = redis_cache_at(silent_port, timeout=2.0)
    settings.HEALTH_CHECK_TIMEOUT = 0.2
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["checks"]["cache"]["detail"].startswith("timed out")


def test_it_checks_the_jwks_when_configured(client: Client, settings, closed_port: int) -> None:
    settings.JWKS_URL = f"http://127.0.0.1:{closed_port}/.well-known/jwks.json"
    settings.JWT_ISSUER = "https://idp.example.org/"
    settings.JWT_AUDIENCE = "comcenter"
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["checks"]["jwks"]["ok"] is False


def test_it_does_not_fail_on_unconfigured_providers_in_dry_run(client: Client) -> None:
    unconfigured = [p for p in all_providers() if not p.is_configured()]
    assert unconfigured, "the test settings configure no provider"
    checks = client.get("/health").json()["checks"]
    for provider in unconfigured:
        check = checks[f"provider:{provider.channel}"]
        assert check["ok"] is True
        assert check["configured"] is False
        assert "DISABLE_SEND" in check["detail"]


def test_it_fails_on_unconfigured_providers_when_sending_is_live(client: Client) -> None:
    flag_set(
        name="DISABLE_SEND", value=False, actor="alice", reason="go live", source=FlagSource.ADMIN
    )
    response = client.get("/health")
    assert response.status_code == 503
    unconfigured = [p for p in all_providers() if not p.is_configured()]
    checks = response.json()["checks"]
    for provider in unconfigured:
        assert checks[f"provider:{provider.channel}"]["ok"] is False


def test_it_serves_a_cached_report_within_the_cache_period(settings, closed_port: int) -> None:
    settings.HEALTH_CACHE_SECONDS = 60
    first = health_report()
    settings.CACHES = redis_cache_at(closed_port)  # would fail if checked again
    assert health_report() is first
    assert health_report(max_age=0).checks["cache"].ok is False


def test_it_reports_liveness_without_touching_dependencies(
    client: Client, settings, closed_port: int
) -> None:
    settings.CACHES = redis_cache_at(closed_port)
    response = client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_it_answers_405_as_json_for_other_methods(client: Client) -> None:
    response = client.post("/health")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert response["Allow"] == "GET, HEAD"
