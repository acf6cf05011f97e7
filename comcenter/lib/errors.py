"""The one error shape of the API: {"error": code, "detail": ..., "request_id": ...}."""

from __future__ import annotations

from typing import Any

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, JsonResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from comcenter.lib.context import get_request_id


class ErrorSerializer(serializers.Serializer):
    """The error shape, as the OpenAPI schema publishes it."""

    error = serializers.CharField()
    detail = serializers.JSONField()
    request_id = serializers.CharField()


class ApiError(exceptions.APIException):
    """An API error with an explicit machine-readable code and optional extra headers."""

    def __init__(
        self,
        status_code: int,
        code: str,
        detail: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.detail_value = detail
        self.headers = headers or {}
        super().__init__(detail=str(detail), code=code)


_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable_entity",
    429: "throttled",
    503: "unavailable",
}


def error_body(code: str, detail: Any) -> dict[str, Any]:
    return {"error": code, "detail": detail, "request_id": get_request_id()}


# Seconds a client is asked to wait while the database is unreachable: a restart or a
# fail-over takes a few seconds, and a client that retries soon loses nothing.
DATABASE_RETRY_AFTER = 2


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, OperationalError | InterfaceError):
        # The database is unreachable (down, restarting, connection cut): nothing was
        # stored, so the honest answer is "try again", never a 500 a client may not retry.
        return Response(
            error_body("database_unavailable", "The database is unreachable; retry later."),
            503,
            headers={"Retry-After": str(DATABASE_RETRY_AFTER)},
        )
    if isinstance(exc, ApiError):
        return Response(
            error_body(exc.code, exc.detail_value), exc.status_code, headers=exc.headers
        )
    response = exception_handler(exc, context)
    if response is None:
        return None
    code = _CODES.get(response.status_code, "error")
    if isinstance(exc, exceptions.ParseError):
        code = "malformed_json"
    elif isinstance(exc, exceptions.ValidationError):
        code = "invalid_fields"
    elif isinstance(exc, exceptions.NotAuthenticated):
        code = "not_authenticated"
    elif isinstance(exc, exceptions.AuthenticationFailed):
        code = getattr(exc, "reason_code", "invalid_token")
    detail = response.data
    if isinstance(detail, dict) and set(detail) == {"detail"}:
        detail = detail["detail"]
    response.data = error_body(code, detail)
    return response


def json_error(status_code: int, code: str, detail: Any) -> JsonResponse:
    return JsonResponse(error_body(code, detail), status=status_code)


def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return json_error(status.HTTP_400_BAD_REQUEST, "bad_request", "The request was malformed.")


def handler403(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return json_error(status.HTTP_403_FORBIDDEN, "forbidden", "Forbidden.")


def handler404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return json_error(status.HTTP_404_NOT_FOUND, "not_found", "No such resource.")


def handler500(request: HttpRequest) -> JsonResponse:
    return json_error(500, "server_error", "Internal error; quote the request id to support.")
