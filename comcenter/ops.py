"""The operations surface: `/health`, `/health/live`, `/canary` and `/metrics`.

Plain Django views, outside DRF: they must keep answering when the API's authentication,
throttles or parsers are what is broken, and each answers in a few milliseconds from caches.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from comcenter.health import health_report
from comcenter.lib.errors import json_error
from comcenter.lib.latency import ack_latency_p95_ms
from comcenter.metrics import metrics_exposition
from comcenter.middleware import SECURITY_HEADER_NAMES, HeaderInspectingResponse
from events.pending import receive_and_queue_active
from flags.registry import FLAGS
from flags.services import flag_is_on

log = logging.getLogger(__name__)

CANARY_FIELDS = (
    "app",
    "version",
    "build",
    "status",
    "mode",
    "p95_ms",
    "security_headers",
    "dependencies_ok",
)


View = Callable[[HttpRequest], HttpResponse]


def read_only(view: View) -> View:
    """GET and HEAD only; anything else is a 405 in the API's JSON error shape.

    Exempt from CSRF: the check ran first and answered a POST with Django's HTML 403 page.
    No method these views serve changes anything, which is all CSRF protects."""

    @csrf_exempt
    @wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            response = json_error(
                405, "method_not_allowed", f"Method {request.method} is not allowed."
            )
            response["Allow"] = "GET, HEAD"
            return response
        return view(request)

    return wrapper


# --- /health ----------------------------------------------------------------------------


@never_cache
@read_only
def health(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 when every configured dependency answers, 503 otherwise."""
    report = health_report()
    return JsonResponse(report.as_json(), status=200 if report.ok else 503)


@never_cache
@read_only
def health_live(request: HttpRequest) -> JsonResponse:
    """Liveness: the process serves requests. Touches no dependency, so a database outage
    does not get every web process restarted by an orchestrator."""
    return JsonResponse({"status": "ok"})


# --- /canary ----------------------------------------------------------------------------


def _flag(name: str) -> bool:
    """A flag's effective value; if the flags cannot be read, the environment's or the
    default value (the canary must answer even with the database down)."""
    try:
        return bool(flag_is_on(name))
    except Exception:
        return bool(settings.FLAG_ENV.get(name, FLAGS[name].default))


def _identity_queueing() -> bool:
    """True while external-identity tokens are received into auth_pending."""
    if not settings.JWKS_URL:
        return False
    try:
        return bool(receive_and_queue_active())
    except Exception:
        log.warning("canary: receive-and-queue state unreadable")
        return False


def canary_mode() -> str:
    """`dry_run`, `receive_and_queue` or `live`, in that precedence.

    `DISABLE_SEND` wins: it is the kill switch, and "nothing leaves" is the strongest
    statement the canary can make (paused messages released later would still be dry-run).
    Then `receive_and_queue` while `DISPATCH_PAUSED` holds messages or the identity provider
    is unreachable and its callers' events wait in `auth_pending`. Otherwise `live`."""
    if _flag("DISABLE_SEND"):
        return "dry_run"
    if _flag("DISPATCH_PAUSED") or _identity_queueing():
        return "receive_and_queue"
    return "live"


def canary_status(
    *, database_ok: bool, dependencies_ok: bool, p95_ms: float | None, intake_paused: bool
) -> str:
    """`down` when the database fails (no event can be acknowledged durably); `degraded`
    when another dependency fails, the recent P95 ack breaks the 120 ms SLO or the intake is
    paused (INTAKE_PAUSED: events are refused with 503); else `ok`."""
    if not database_ok:
        return "down"
    slow = p95_ms is not None and p95_ms > settings.ACK_P95_SLO_MS
    if not dependencies_ok or slow or intake_paused:
        return "degraded"
    return "ok"


class CanaryResponse(HeaderInspectingResponse):
    """The canary's JSON, whose `security_headers` is filled in from this very response's
    headers once every middleware has added its own (see RequestIdMiddleware)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        super().__init__(b"", content_type="application/json")

    def headers_final(self) -> None:
        present = [name for name in SECURITY_HEADER_NAMES if self.has_header(name)]
        missing = [name for name in SECURITY_HEADER_NAMES if not self.has_header(name)]
        self.data["security_headers"] = {"present": present, "missing": missing}
        self.content = json.dumps(self.data).encode()
        if self.has_header("Content-Length"):
            self["Content-Length"] = str(len(self.content))


@never_cache
@read_only
def canary(request: HttpRequest) -> HttpResponse:
    """Exactly the eight fields of the canary (README, API in brief), always 200: the body
    carries the verdict."""
    report = health_report()
    database = report.checks.get("database")
    database_ok = bool(database and database.ok)
    p95 = ack_latency_p95_ms()
    data: dict[str, Any] = {
        "app": "comcenter",
        "version": settings.APP_VERSION,
        "build": settings.BUILD,
        "status": canary_status(
            database_ok=database_ok,
            dependencies_ok=report.ok,
            p95_ms=p95,
            intake_paused=_flag("INTAKE_PAUSED"),
        ),
        "mode": canary_mode(),
        "p95_ms": p95,
        "security_headers": {"present": [], "missing": list(SECURITY_HEADER_NAMES)},
        "dependencies_ok": report.ok,
    }
    return CanaryResponse(data)


# --- /metrics ---------------------------------------------------------------------------

# Any of these means a proxy relayed the request: its REMOTE_ADDR is the proxy's (often
# loopback on the same host), not the client's. The list cannot be complete (a proxy may add
# none), which is why loopback counts only while no proxy is trusted (see `metrics`).
_FORWARDING_HEADERS = (
    "HTTP_FORWARDED",
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_REAL_IP",
    "HTTP_X_CLIENT_IP",
    "HTTP_CLIENT_IP",
    "HTTP_TRUE_CLIENT_IP",
    "HTTP_CF_CONNECTING_IP",
    "HTTP_FASTLY_CLIENT_IP",
    "HTTP_X_CLUSTER_CLIENT_IP",
    "HTTP_X_ORIGINAL_FORWARDED_FOR",
    "HTTP_VIA",
)


def is_direct_loopback(request: HttpRequest) -> bool:
    """The request comes from this machine itself, not relayed by a proxy.

    Only meaningful when no proxy is in front (TRUST_PROXY_HEADERS off): behind a reverse
    proxy on the same host every request arrives from loopback, with whatever headers the
    proxy chose to add."""
    if settings.TRUST_PROXY_HEADERS:
        return False
    if any(header in request.META for header in _FORWARDING_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def _bearer_ok(request: HttpRequest, expected: str) -> bool:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    return hmac.compare_digest(token.strip().encode(), expected.encode())


@never_cache
@read_only
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text. Open to direct loopback while no proxy is trusted
    (TRUST_PROXY_HEADERS off); otherwise a bearer METRICS_TOKEN (401 when one is configured
    and not given correctly), and 403 when no token is configured."""
    token = settings.METRICS_TOKEN
    if not is_direct_loopback(request):
        if not token:
            return json_error(403, "forbidden", "Metrics are served to loopback only.")
        if not _bearer_ok(request, token):
            response = json_error(401, "unauthorized", "A valid metrics bearer token is needed.")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    body, content_type = metrics_exposition()
    return HttpResponse(body, content_type=content_type)
