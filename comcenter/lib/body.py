"""The raw request body within a size limit, shared by the intake and the webhook signature
check (which must verify the very bytes the intake then parses)."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from django.http.request import RawPostDataException
from rest_framework.request import Request

from comcenter.lib.errors import ApiError
from comcenter.lib.metrics import EVENTS


def _too_large(max_bytes: int) -> ApiError:
    EVENTS.labels(outcome="rejected", reason="payload_too_large").inc()
    return ApiError(413, "payload_too_large", f"The body may be at most {max_bytes} bytes.")


def body_read(request: Request | HttpRequest, *, max_bytes: int) -> bytes:
    """The raw body; ApiError 413 when it is (or declares itself) over `max_bytes`."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > max_bytes:
        raise _too_large(max_bytes)
    try:
        body = request.body
    except (RequestDataTooBig, RawPostDataException):
        raise _too_large(max_bytes) from None
    if len(body) > max_bytes:
        raise _too_large(max_bytes)
    return body
