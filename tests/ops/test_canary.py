"""/canary: exactly eight fields, a shared recent P95, the mode from the flags, truthful
security headers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client

from comcenter.middleware import SECURITY_HEADER_NAMES
from flags.models import FlagSource
from flags.services import flag_set
from tests.conftest import Actor
from tests.ops.conftest import redis_cache_at

pytestmark = pytest.mark.django_db

EIGHT_FIELDS = {
    "app",
    "version",
    "build",
    "status",
    "mode",
    "p95_ms",
    "security_headers",
    "dependencies_ok",
}


def _set(name: str, value: bool) -> None:
    flag_set(name=name, value=value, actor="alice", reason="canary test", source=FlagSource.ADMIN)


def test_it_answers_exactly_the_eight_fields(client: Client, settings) -> None:
    settings.BUILD = "build-42"
    response = client.get("/canary")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == EIGHT_FIELDS
    assert body["app"] == "comcenter"
    assert body["version"] == settings.APP_VERSION
    assert body["build"] == "build-42"
    assert body["status"] == "ok"
    assert body["dependencies_ok"] is True


def test_it_reports_p95_only_from_30_acks_on(
    client: Client, alice: Actor, make_event: Callable[..., dict[str, Any]]
) -> None:
    for index in range(29):
        assert alice.post_event(make_event(key=f"evt-{index}")).status_code == 202
    assert client.get("/canary").json()["p95_ms"] is None
    assert alice.post_event(make_event(key="evt-29")).status_code == 202
    p95 = client.get("/canary").json()["p95_ms"]
    assert isinstance(p95, float)
    assert p95 > 0


def test_it_does_not_count_duplicates_as_acks(
    client: Client, alice: Actor, make_event: Callable[..., dict[str, Any]]
) -> None:
    for index in range(29):
        alice.post_event(make_event(key=f"evt-{index}"))
    assert alice.post_event(make_event(key="evt-0")).status_code == 200
    assert client.get("/canary").json()["p95_ms"] is None


def test_it_says_dry_run_by_default(client: Client) -> None:
    assert client.get("/canary").json()["mode"] == "dry_run"


def test_it_says_live_when_sending_is_on(client: Client) -> None:
    _set("DISABLE_SEND", False)
    assert client.get("/canary").json()["mode"] == "live"


def test_it_says_receive_and_queue_while_dispatch_is_paused(client: Client) -> None:
    _set("DISABLE_SEND", False)
    _set("DISPATCH_PAUSED", True)
    assert client.get("/canary").json()["mode"] == "receive_and_queue"


def test_it_lets_the_kill_switch_win_over_the_pause(client: Client) -> None:
    _set("DISPATCH_PAUSED", True)
    assert client.get("/canary").json()["mode"] == "dry_run"


def test_it_is_degraded_when_a_dependency_fails(client: Client, settings, closed_port: int) -> None:
    settings.CACHES = redis_cache_at(closed_port)
    response = client.get("/canary")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["dependencies_ok"] is False


def test_it_reports_hsts_missing_on_plain_http(client: Client) -> None:
    headers = client.get("/canary").json()["security_headers"]
    assert headers["missing"] == ["Strict-Transport-Security"]
    assert set(headers["present"]) == set(SECURITY_HEADER_NAMES) - {"Strict-Transport-Security"}


def test_it_reports_all_six_on_https_behind_the_proxy(client: Client) -> None:
    response = client.get("/canary", HTTP_X_FORWARDED_PROTO="https")
    headers = response.json()["security_headers"]
    assert headers == {"present": list(SECURITY_HEADER_NAMES), "missing": []}
    for name in SECURITY_HEADER_NAMES:
        assert response.has_header(name)


class DropPermissionsPolicy:
    """A misconfigured deployment: something strips a header on the way out."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        del response["Permissions-Policy"]
        return response


def test_it_reports_a_header_that_is_really_missing(client: Client, settings) -> None:
    chain = list(settings.MIDDLEWARE)
    position = chain.index("comcenter.middleware.RequestIdMiddleware") + 1
    chain.insert(position, f"{__name__}.DropPermissionsPolicy")
    settings.MIDDLEWARE = chain
    response = client.get("/canary", HTTP_X_FORWARDED_PROTO="https")
    assert not response.has_header("Permissions-Policy")
    assert response.json()["security_headers"]["missing"] == ["Permissions-Policy"]


def test_it_says_receive_and_queue_while_the_identity_provider_is_unreachable(
    client: Client, settings, closed_port: int
) -> None:
    settings.JWKS_URL = f"http://127.0.0.1:{closed_port}/.well-known/jwks.json"
    settings.JWT_ISSUER = "https://idp.example.org/"
    settings.JWT_AUDIENCE = "comcenter"
    _set("DISABLE_SEND", False)
    body = client.get("/canary").json()
    assert body["mode"] == "receive_and_queue"
    assert body["status"] == "degraded"
    assert body["dependencies_ok"] is False
