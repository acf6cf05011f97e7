"""The single outbound HTTP wrapper (comcenter/lib/http.py) against a real loopback server."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from comcenter.lib import http
from tests.support.http_stub import HttpStub


@pytest.fixture
def other_host() -> Iterator[HttpStub]:
    """A second server: 'localhost' vs '127.0.0.1' makes it another origin."""
    stub = HttpStub().start()
    try:
        yield stub
    finally:
        stub.stop()


def test_it_returns_a_2xx_with_its_body_and_headers(http_stub: HttpStub) -> None:
    http_stub.respond(201, {"sid": "SM1"}, {"X-Trace": "t-1"})

    response = http.request(
        "POST",
        f"{http_stub.url}/things",
        timeout=2,
        headers={"Idempotency-Key": "k-1"},
        data={"To": "x", "Body": "y"},
        auth=("user", "pass"),
    )

    [request] = http_stub.requests
    assert response.status == 201
    assert response.json() == {"sid": "SM1"}
    assert response.headers["x-trace"] == "t-1"
    assert request.method == "POST"
    assert request.path == "/things"
    assert request.body == b"To=x&Body=y"
    assert request.headers["Idempotency-Key"] == "k-1"
    assert request.headers["Authorization"] == "Basic dXNlcjpwYXNz"
    assert request.headers["User-Agent"] == "comcenter/0.1.0"


def test_it_lets_the_caller_override_the_user_agent(http_stub: HttpStub) -> None:
    http.request("GET", http_stub.url, timeout=2, headers={"User-Agent": "probe/1"})

    assert http_stub.requests[0].headers["User-Agent"] == "probe/1"


def test_it_raises_on_an_error_status_with_body_and_retry_after(http_stub: HttpStub) -> None:
    http_stub.respond(429, {"code": 20429}, {"Retry-After": "12"})

    with pytest.raises(http.HttpError) as caught:
        http.request("GET", f"{http_stub.url}/x?token=s3cr3t", timeout=2)

    error = caught.value
    assert error.status == 429
    assert error.retry_after == 12.0
    assert error.timed_out is False
    assert error.body == b'{"code": 20429}'
    assert error.message == "GET 127.0.0.1 answered 429"


def test_it_times_out_a_slow_server(http_stub: HttpStub) -> None:
    http_stub.respond(200, {}, delay=2.0)

    with pytest.raises(http.HttpError) as caught:
        http.request("GET", http_stub.url, timeout=0.2)

    assert caught.value.timed_out is True
    assert caught.value.status is None


def test_it_reports_a_refused_connection_without_a_status() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    with pytest.raises(http.HttpError) as caught:
        http.request("GET", f"http://127.0.0.1:{port}/", timeout=2)

    assert caught.value.status is None
    assert caught.value.timed_out is False
    assert caught.value.message == "GET 127.0.0.1 failed: ConnectionError"


def test_it_follows_a_redirect_on_the_same_host(http_stub: HttpStub) -> None:
    http_stub.respond(302, None, {"Location": "/moved"})
    http_stub.respond(200, {"keys": []})

    response = http.request("GET", f"{http_stub.url}/jwks", timeout=2)

    assert response.json() == {"keys": []}
    assert [r.path for r in http_stub.requests] == ["/jwks", "/moved"]


def test_it_refuses_a_redirect_to_another_host(http_stub: HttpStub, other_host: HttpStub) -> None:
    http_stub.respond(302, None, {"Location": f"http://localhost:{other_host.port}/steal"})

    with pytest.raises(http.HttpError) as caught:
        http.request("GET", f"{http_stub.url}/jwks", timeout=2, auth=("user", "pass"))

    assert caught.value.status == 302
    assert "off-host" in caught.value.message
    assert other_host.requests == []


def test_it_does_not_follow_a_redirect_of_a_post(http_stub: HttpStub) -> None:
    http_stub.respond(307, None, {"Location": "/elsewhere"})

    with pytest.raises(http.HttpError) as caught:
        http.request("POST", http_stub.url, timeout=2, data={"a": "b"})

    assert caught.value.status == 307
    assert len(http_stub.requests) == 1


def test_it_stops_after_too_many_redirects(http_stub: HttpStub) -> None:
    for _ in range(http.MAX_REDIRECTS + 1):
        http_stub.respond(302, None, {"Location": "/again"})

    with pytest.raises(http.HttpError, match="redirected too often"):
        http.request("GET", http_stub.url, timeout=2)

    assert len(http_stub.requests) == http.MAX_REDIRECTS + 1


def test_it_refuses_a_body_over_the_limit(http_stub: HttpStub) -> None:
    http_stub.respond(200, b"x" * 5000)

    with pytest.raises(http.HttpError, match="larger than 1000 bytes"):
        http.request("GET", http_stub.url, timeout=2, max_bytes=1000)


def test_it_reports_a_non_json_body_as_an_http_error(http_stub: HttpStub) -> None:
    http_stub.respond(200, b"<html>")

    response = http.request("GET", http_stub.url, timeout=2)

    with pytest.raises(http.HttpError, match="not JSON"):
        response.json()


def test_it_reuses_a_given_session(http_stub: HttpStub) -> None:
    with http.session_new() as session:
        for _ in range(3):
            http.request("GET", http_stub.url, timeout=2, session=session)

    assert len({r.client_port for r in http_stub.requests}) == 1


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        ("Sat, 21 Nov 2026 20:01:30 GMT", 90.0),
        ("Sat, 21 Nov 2026 19:00:00 GMT", 0.0),
        ("-5", None),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_it_parses_retry_after(value: str | None, seconds: float | None) -> None:
    now = datetime(2026, 11, 21, 20, 0, 0, tzinfo=UTC)

    assert http.parse_retry_after(value, now=now) == seconds
