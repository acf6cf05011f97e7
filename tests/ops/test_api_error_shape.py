"""404 and 405 on the API answer in the one JSON error shape, with the request id echoed."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.conftest import Actor

pytestmark = pytest.mark.django_db


def _assert_error(response, *, status: int, code: str, request_id: str) -> None:
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail", "request_id"}
    assert body["error"] == code
    assert body["request_id"] == request_id == response["X-Request-ID"]
    assert response.has_header("Content-Security-Policy")


def test_it_answers_an_unknown_api_path_with_a_json_404(client: Client) -> None:
    response = client.get("/api/v1/nothing-here", HTTP_X_REQUEST_ID="req-404")
    _assert_error(response, status=404, code="not_found", request_id="req-404")


def test_it_answers_an_unknown_event_with_a_json_404(alice: Actor) -> None:
    response = alice.client.get(
        "/api/v1/events/00000000-0000-4000-8000-000000000000", HTTP_X_REQUEST_ID="req-404e"
    )
    _assert_error(response, status=404, code="not_found", request_id="req-404e")


def test_it_answers_a_wrong_method_on_the_api_with_a_json_405(alice: Actor) -> None:
    response = alice.client.get("/api/v1/events", HTTP_X_REQUEST_ID="req-405")
    _assert_error(response, status=405, code="method_not_allowed", request_id="req-405")


def test_it_answers_a_wrong_method_on_the_ops_views_with_a_json_405(client: Client) -> None:
    for url in ("/health", "/health/live", "/canary", "/metrics"):
        response = client.delete(url, HTTP_X_REQUEST_ID="req-405o")
        _assert_error(response, status=405, code="method_not_allowed", request_id="req-405o")


def test_it_answers_a_post_to_the_ops_views_with_a_json_405_not_a_csrf_page() -> None:
    # A browser-like client: the CSRF check runs (the default test client skips it), and
    # it used to answer Django's HTML 403 page before the view could say 405.
    browser = Client(enforce_csrf_checks=True)
    for url in ("/health", "/health/live", "/canary", "/metrics"):
        response = browser.post(
            url, data="{}", content_type="application/json", HTTP_X_REQUEST_ID="req-405p"
        )
        _assert_error(response, status=405, code="method_not_allowed", request_id="req-405p")
        assert response["Allow"] == "GET, HEAD"
