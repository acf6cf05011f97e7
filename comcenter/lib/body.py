"""The raw request body within a size limit, shared by the intake and the webhook signature
check (which must verify the very bytes the intake then parses).

Django reads only CONTENT_LENGTH bytes, so a body sent with `Transfer-Encoding: chunked` (no
Content-Length) would read as empty. A server that dechunks it (gunicorn) says so with
`wsgi.input_terminated`: then the stream is read to its end here, never more than one byte
past the limit, and kept as Django's own cache of the body, so `request.body` (and a second
`body_read`) returns the same bytes."""

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
    # Django's request itself: each attribute read through DRF's Request is a __getattr__
    # fallback to it.
    django_request: HttpRequest = getattr(request, "_request", request)
    environ = django_request.META  # under WSGI, the environ itself
    try:
        declared = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > max_bytes:
        raise _too_large(max_bytes)
    if (
        not declared
        and environ.get("wsgi.input_terminated")
        and not hasattr(django_request, "_body")
        and not getattr(django_request, "_read_started", False)
    ):
        body = environ["wsgi.input"].read(max_bytes + 1)
        django_request._body = body
    else:
        try:
            body = django_request.body
        except (RequestDataTooBig, RawPostDataException):
            raise _too_large(max_bytes) from None
    if len(body) > max_bytes:
        raise _too_large(max_bytes)
    return body
