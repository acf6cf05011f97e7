"""The API path's middleware chain (comcenter/lib/wsgi_routing.py), through the WSGI
application itself: /api/v1/ skips sessions, CSRF, auth, messages and static files, records
its request metrics with ApiMetricsMiddleware instead of django_prometheus's pair, and keeps
everything else; the rest of the site keeps the full chain."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from prometheus_client import REGISTRY

from bench.handler_cost import wsgi_environ
from comcenter.lib.wsgi_routing import (
    API_REPLACED_MIDDLEWARE,
    API_SKIPPED_MIDDLEWARE,
    api_middleware,
    routed_application,
)
from comcenter.middleware import SECURITY_HEADER_NAMES


def _call(app: Any, path: str, *, method: str = "GET", body: bytes = b"", **headers: str) -> Any:
    # Through a TLS proxy (X-Forwarded-Proto: https), so HSTS is among the headers.
    environ = wsgi_environ(
        method=method, path=path, body=body, headers={"X-Forwarded-Proto": "https", **headers}
    )
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        answer["status"] = int(status[:3])
        answer["headers"] = headers

    # As Django's test client does: the handler must not close the test's transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        answer["body"] = b"".join(app(environ, start_response))
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    return answer


@pytest.fixture
def app(settings: Any) -> Any:
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    return routed_application()


def test_it_accepts_an_event_with_every_security_header_and_no_cookie(
    app: Any, alice: Any, make_event: Any
) -> None:
    answer = _call(
        app,
        "/api/v1/events",
        method="POST",
        body=json.dumps(make_event("lean-1")).encode(),
        Authorization=f"Bearer {alice.token}",
        **{"X-Request-ID": "req-lean"},
    )
    assert answer["status"] == 202
    names = {name.lower(): value for name, value in answer["headers"]}
    assert {h.lower() for h in SECURITY_HEADER_NAMES} <= set(names)
    assert names["x-request-id"] == "req-lean"
    assert "set-cookie" not in names
    assert "vary" not in names or "cookie" not in names["vary"].lower()


def test_it_answers_a_forged_token_on_the_api_path_with_401(app: Any, db: Any) -> None:
    answer = _call(app, "/api/v1/events", method="POST", body=b"{}", Authorization="Bearer forged")
    assert answer["status"] == 401
    assert json.loads(answer["body"])["error"]


def test_it_keeps_sessions_and_csrf_for_the_admin(app: Any, db: Any) -> None:
    answer = _call(app, "/admin/login/")
    assert answer["status"] == 200
    cookies = [value for name, value in answer["headers"] if name.lower() == "set-cookie"]
    assert any(cookie.strip().startswith("csrftoken=") for cookie in cookies)


def test_it_skips_only_the_named_middleware(settings: Any) -> None:
    chain = api_middleware(settings.MIDDLEWARE)
    assert len(chain) == len(settings.MIDDLEWARE) - len(API_SKIPPED_MIDDLEWARE)
    assert "comcenter.middleware.RequestIdMiddleware" in chain
    kept = [m for m in settings.MIDDLEWARE if m not in API_SKIPPED_MIDDLEWARE]
    for original, replacement in API_REPLACED_MIDDLEWARE.items():
        assert original not in chain
        assert chain.index(replacement) == kept.index(original)  # in the original's place


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("method", "status", "expected_method"),
    [("POST", 202, "POST"), ("GET", 405, "GET"), ("BREW", 405, "<invalid method>")],
)
def test_it_counts_api_answers_by_status_view_and_method(
    app: Any, alice: Any, make_event: Any, method: str, status: int, expected_method: str
) -> None:
    # The families the dashboards and alert rules read (deploy/), as django_prometheus names
    # and labels them, so one scrape sums the API's chain and the full one.
    counted = "django_http_responses_total_by_status_view_method_total"
    timed = "django_http_requests_latency_seconds_by_view_method_count"
    labels = {"status": str(status), "view": "events", "method": expected_method}
    before = _sample(counted, **labels), _sample(timed, view="events", method=expected_method)
    answer = _call(
        app,
        "/api/v1/events",
        method=method,
        body=json.dumps(make_event(f"counted-{method}")).encode(),
        Authorization=f"Bearer {alice.token}",
    )
    assert answer["status"] == status
    assert _sample(counted, **labels) == before[0] + 1
    assert _sample(timed, view="events", method=expected_method) == before[1] + 1


def test_it_answers_with_the_bytes_and_headers_of_drf_s_response(
    app: Any, alice: Any, make_event: Any, monkeypatch: Any
) -> None:
    # The intake renders its 202/200 itself (events/intake.py `_answer`); with that disabled
    # DRF's Response answers. A duplicate answers with the first event's id, so the two
    # answers to the same request must be equal, header for header and byte for byte.
    body = json.dumps(make_event("same-bytes")).encode()
    headers = {"Authorization": f"Bearer {alice.token}", "X-Request-ID": "req-same"}
    assert _call(app, "/api/v1/events", method="POST", body=body, **headers)["status"] == 202
    for accept in ("*/*", "application/json", "application/json; indent=2"):
        ours = _call(app, "/api/v1/events", method="POST", body=body, Accept=accept, **headers)
        with monkeypatch.context() as patched:
            patched.setattr("events.intake.JSONRenderer", type("Other", (), {}))
            drf = _call(app, "/api/v1/events", method="POST", body=body, Accept=accept, **headers)
        assert ours["status"] == drf["status"] == 200
        assert ours["headers"] == drf["headers"]
        assert ours["body"] == drf["body"]
