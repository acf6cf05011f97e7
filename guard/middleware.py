"""Counting every answer for the guard and the SLO report (guard/measurements.py)."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from guard.measurements import ack_bounds, ack_field, measurement_add

# Probes and scrapes are not traffic: a load balancer polling /health every second would
# dilute the 5xx ratio, and /health answers 503 on purpose when a dependency fails.
_NOT_COUNTED = ("/health", "/canary", "/metrics", "/static/")
_INTAKE = "events"
_ACKED = {"events", "webhook"}


class MeasurementMiddleware:
    """Adds each answer's counts to the process buffer; see guard/measurements.py.

    - a 5xx is an `errors` count unless it is a deliberate 503 with `Retry-After` (intake
      paused, receive-and-queue full), which is `refused`: the guard pausing the intake must
      not read as a fault and trip the 5xx trigger in turn;
    - a request to the bearer intake with an `Authorization` header is an authentication
      attempt: a 401 is `auth_fail`, any other answer (but `refused`, which comes before
      authentication) `auth_ok`;
    - a 202/200 of the intake or a webhook is an ack, timed from the request's start."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self._bounds = ack_bounds()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        path = request.path_info
        if path.startswith(_NOT_COUNTED):
            return response
        status = response.status_code
        fields = {"answers": 1}
        refused = status == 503 and response.has_header("Retry-After")
        if refused:
            fields["refused"] = 1
        elif status >= 500:
            fields["errors"] = 1
        match = request.resolver_match
        name = match.url_name if match is not None else None
        if name == _INTAKE and not refused and "HTTP_AUTHORIZATION" in request.META:
            fields["auth_fail" if status == 401 else "auth_ok"] = 1
        started = getattr(request, "started_at", None)
        if name in _ACKED and status in (200, 202) and started is not None:
            ms = (time.perf_counter() - started) * 1000.0
            fields["ack_n"] = 1
            fields[ack_field(ms, self._bounds)] = 1
        measurement_add(fields)
        return response
