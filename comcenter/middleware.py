"""Project-wide middleware: the request id and the six security headers.

Order matters (settings.MIDDLEWARE): RequestIdMiddleware sits outside every middleware that
adds headers, so a `HeaderInspectingResponse` (the canary) sees the final header set."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

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
