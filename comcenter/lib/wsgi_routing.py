"""The API path without the middleware it does not use.

Requests under /api/v1/ are machine calls authenticated by DRF (a bearer JWT or a webhook
signature): they carry no session cookie, are exempt from CSRF (DRF's views), never see
Django's `request.user` or flash messages, and are not static files. Sessions, CSRF, auth,
messages and WhiteNoise cost about 0.2 ms of CPU per request between them (measured in
process by bench/handler_cost.py). So /api/v1/ is served by a second Django handler whose
chain is settings.MIDDLEWARE less API_SKIPPED_MIDDLEWARE, with API_REPLACED_MIDDLEWARE put in
place of their originals; everything else (admin, docs, health, metrics) by the full chain.
Every other middleware, including any added later, runs on both: the request id, the guard's
measurements, the security headers.

The replaced pair is django_prometheus's: on the API path comcenter.middleware's
ApiMetricsMiddleware records the two request families the dashboards and alert rules read,
under the same names, instead of all of them (bench/NOTES.md has the figures).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application

API_PREFIX = "/api/v1/"
API_SKIPPED_MIDDLEWARE = frozenset(
    {
        "whitenoise.middleware.WhiteNoiseMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "django_prometheus.middleware.PrometheusBeforeMiddleware",
    }
)
API_REPLACED_MIDDLEWARE = {
    "django_prometheus.middleware.PrometheusAfterMiddleware": (
        "comcenter.middleware.ApiMetricsMiddleware"
    ),
}

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _ApiHandler(WSGIHandler):
    """Django's WSGI handler with the API's middleware chain."""

    def load_middleware(self, is_async: bool = False) -> None:
        # Django builds the chain from settings.MIDDLEWARE and nothing else: present the API's
        # list while it does (once, at start-up, before any request is served).
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = api_middleware(full)
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


def api_middleware(full: list[str]) -> list[str]:
    """The API's chain: `full` less the skipped, with the replacements in their places."""
    return [API_REPLACED_MIDDLEWARE.get(m, m) for m in full if m not in API_SKIPPED_MIDDLEWARE]


def routed_application() -> Wsgi:
    """The WSGI application: /api/v1/ through the API's chain, the rest through the full one."""
    full = get_wsgi_application()
    api = _ApiHandler()

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO", "").startswith(API_PREFIX):
            return api(environ, start_response)
        return full(environ, start_response)

    return application
