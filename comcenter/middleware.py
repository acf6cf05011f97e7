"""Project-wide middleware: the request id, the six security headers, and the API path's
request metrics.

Order matters (settings.MIDDLEWARE): RequestIdMiddleware sits outside every middleware that
adds headers, so a `HeaderInspectingResponse` (the canary) sees the final header set."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django_prometheus.middleware import Metrics

from comcenter.lib.context import clean_request_id, reset_request_id, set_request_id

Handler = Callable[[HttpRequest], HttpResponse]


class HeaderInspectingResponse(HttpResponse):
    """A response whose body reports on its own headers (the canary's `security_headers`).

    The view cannot see headers that middleware adds after it returns, so the outermost
    middleware calls `headers_final()` once every other middleware is done."""

    def headers_final(self) -> None:
        """A subclass must render its body here from `self.headers`."""
        raise NotImplementedError


class RequestIdMiddleware:
    """Echo a safe `X-Request-ID` or generate one; bind it for logs and lineage."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = clean_request_id(request.META.get("HTTP_X_REQUEST_ID"))
        request.request_id = request_id  # type: ignore[attr-defined]
        request.started_at = time.perf_counter()  # type: ignore[attr-defined]
        # Unbound afterwards, so lines logged between requests (a worker restarting, a
        # periodic task in the same process) do not carry a stale id. Django's own line for
        # a 4xx/5xx response comes after this returns; it carries the request, and the log
        # filter reads the id from there (comcenter/lib/logging.py).
        token = set_request_id(request_id)
        try:
            response = self.get_response(request)
        finally:
            reset_request_id(token)
        response["X-Request-ID"] = request_id
        if isinstance(response, HeaderInspectingResponse):
            response.headers_final()
        return response


# Scripts, styles, fonts, images and fetches from this origin only; no inline or eval'd script,
# no plugins, no framing, forms post only here. The API docs page (Swagger UI) is served from
# our own static files (drf-spectacular-sidecar) with its start-up script as a file, so no
# CDN is allowed. Styles alone allow 'unsafe-inline': Swagger UI renders style attributes and
# some admin pages carry a <style> block; inline style cannot run code, and a browser test
# (tests/ops/test_browser_csp.py) shows the docs page breaks without it.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
    "microphone=(), payment=(), usb=()"
)
SECURITY_HEADER_NAMES = (
    "Strict-Transport-Security",
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "Referrer-Policy",
    "Permissions-Policy",
)


class SecurityHeadersMiddleware:
    """Set the six security headers on every response.

    HSTS goes on HTTPS responses only (RFC 6797 §7.2); behind the TLS-terminating proxy a
    request is HTTPS when it carries `X-Forwarded-Proto: https` and TRUST_PROXY_HEADERS is on.
    """

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.setdefault("X-Frame-Options", "DENY")
        response.setdefault("X-Content-Type-Options", "nosniff")
        response.setdefault("Referrer-Policy", "same-origin")
        response.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        if request.is_secure() and settings.SECURE_HSTS_SECONDS:
            response.setdefault(
                "Strict-Transport-Security",
                f"max-age={settings.SECURE_HSTS_SECONDS}; includeSubDomains",
            )
        return response


_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS", "CONNECT", "PATCH"}
)


class ApiMetricsMiddleware:
    """The API path's request metrics, in place of django_prometheus's two middleware
    (comcenter/lib/wsgi_routing.py).

    Those record a dozen families per request, each increment a write to a memory-mapped
    file in multiprocess mode and each labelled one a lookup of its child; nothing reads
    most of them. This records the two that the dashboards and the alert rules do read, into
    django_prometheus's own metric objects (same names, same labels, so one scrape sums both
    chains): `django_http_responses_total_by_status_view_method` and
    `django_http_requests_latency_seconds_by_view_method`, timed from where it sits in the
    chain, innermost, as django_prometheus's After middleware is. The labelled children are
    resolved once per (status, view, method). A method outside HTTP's standard ones is
    labelled `<invalid method>` on both, so a client cannot grow either without bound."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response
        metrics = Metrics.get_instance()
        self._responses = metrics.responses_by_status_view_method
        self._latency = metrics.requests_latency_by_view_method
        self._children: dict[tuple[int, str, str], tuple[Any, Any]] = {}

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        match = request.resolver_match
        view = (match.view_name if match is not None else None) or "<unnamed view>"
        method = request.method if request.method in _METHODS else "<invalid method>"
        key = (response.status_code, view, method)
        children = self._children.get(key)
        if children is None:
            children = (
                self._responses.labels(status=str(key[0]), view=view, method=method),
                self._latency.labels(view=view, method=method),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(elapsed)
        return response
