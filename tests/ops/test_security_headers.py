"""The six security headers on every response; HSTS on HTTPS only."""

from __future__ import annotations

import re

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import include, path

from comcenter.middleware import CONTENT_SECURITY_POLICY

pytestmark = pytest.mark.django_db

ALWAYS = (
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "Referrer-Policy",
    "Permissions-Policy",
)


def _explode(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom")


urlpatterns = [path("explode", _explode), path("", include("comcenter.urls"))]
handler404 = "comcenter.lib.errors.handler404"
handler500 = "comcenter.lib.errors.handler500"


def _assert_headers(response: HttpResponse, *, https: bool) -> None:
    for name in ALWAYS:
        assert response.has_header(name), name
    assert response.has_header("Strict-Transport-Security") is https


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("get", "/canary", 200),
        ("get", "/health", 200),
        ("get", "/no/such/page", 404),
        ("get", "/api/v1/no-such-endpoint", 404),
        ("put", "/canary", 405),
        ("post", "/api/v1/events", 401),
        ("get", "/admin/login/", 200),
        ("get", "/api/docs/", 200),
        ("get", "/api/schema/", 200),
    ],
)
@pytest.mark.parametrize("https", [False, True])
def test_it_sets_the_headers_on_every_response(
    client: Client, method: str, url: str, status: int, https: bool
) -> None:
    extra = {"HTTP_X_FORWARDED_PROTO": "https"} if https else {}
    response = getattr(client, method)(url, **extra)
    assert response.status_code == status
    _assert_headers(response, https=https)


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("https", [False, True])
def test_it_sets_the_headers_on_a_server_error(client: Client, https: bool) -> None:
    client.raise_request_exception = False
    extra = {"HTTP_X_FORWARDED_PROTO": "https"} if https else {}
    response = client.get("/explode", **extra)
    assert response.status_code == 500
    assert response.json()["error"] == "server_error"
    _assert_headers(response, https=https)


def test_it_ignores_the_forwarded_proto_when_the_proxy_is_not_trusted(
    client: Client, settings
) -> None:
    settings.SECURE_PROXY_SSL_HEADER = None  # TRUST_PROXY_HEADERS=false
    response = client.get("/canary", HTTP_X_FORWARDED_PROTO="https")
    assert not response.has_header("Strict-Transport-Security")
    assert response.json()["security_headers"]["missing"] == ["Strict-Transport-Security"]


def test_it_sends_hsts_for_a_year_with_subdomains(client: Client) -> None:
    response = client.get("/health", HTTP_X_FORWARDED_PROTO="https")
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_it_sends_a_csp_that_allows_no_foreign_or_inline_script(client: Client) -> None:
    policy = client.get("/health")["Content-Security-Policy"]
    assert policy == CONTENT_SECURITY_POLICY
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"


def test_it_serves_the_api_docs_from_our_own_static_files(client: Client) -> None:
    html = client.get("/api/docs/").content.decode()
    sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html)
    assert sources, html
    for source in sources:
        assert source.startswith("/"), source  # same origin: no CDN
    # No inline script: every <script> tag loads a file.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)


def test_it_serves_the_swagger_start_script_as_a_file(client: Client) -> None:
    response = client.get("/api/docs/?script=")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    assert "/api/schema/" in response.content.decode()
