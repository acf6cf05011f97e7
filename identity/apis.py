"""POST /api/v1/auth/token: OAuth2 client credentials for service accounts."""

from __future__ import annotations

import base64
import binascii

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import parsers, permissions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from comcenter.lib.errors import ApiError, ErrorSerializer
from identity import services
from identity.auth import issue_access_token, record_auth_failure
from identity.serializers import TokenInSerializer, TokenOutSerializer
from identity.throttles import TokenThrottle

_ERROR_TEXT = {
    400: "Malformed request, unsupported grant type or a scope the client may not have",
    401: "Unknown client or wrong secret",
    415: "Body is neither JSON nor a form",
    429: "Throttled; see Retry-After",
}


class TokenApi(APIView):
    """POST /api/v1/auth/token — OAuth2 client credentials (form or JSON, or HTTP Basic)."""

    authentication_classes: list[type] = []
    permission_classes = [permissions.AllowAny]
    throttle_classes = [TokenThrottle]
    parser_classes = [parsers.JSONParser, parsers.FormParser]

    @extend_schema(
        operation_id="auth_token",
        summary="Exchange client credentials for an access token",
        request={
            "application/json": TokenInSerializer,
            "application/x-www-form-urlencoded": TokenInSerializer,
        },
        responses={
            200: TokenOutSerializer,
            **{code: OpenApiResponse(ErrorSerializer, text) for code, text in _ERROR_TEXT.items()},
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        try:
            data = request.data
        except RecursionError:
            raise ApiError(400, "invalid_request", "The JSON is nested too deeply.") from None
        if not hasattr(data, "get"):
            raise ApiError(400, "invalid_request", "The body must be a JSON object or a form.")
        serializer = TokenInSerializer(data=data)
        if not serializer.is_valid():
            errors = serializer.errors
            code = "unsupported_grant_type" if "grant_type" in errors else "invalid_request"
            raise ApiError(400, code, errors)
        client_id = serializer.validated_data.get("client_id")
        client_secret = serializer.validated_data.get("client_secret")
        basic = _basic_credentials(request)
        if basic:
            client_id, client_secret = basic
        if not client_id or not client_secret:
            record_auth_failure("missing_credentials")
            raise ApiError(
                401, "invalid_client", {"client_id": ["client_id and client_secret are required."]}
            )
        account = services.service_account_check(client_id=client_id, client_secret=client_secret)
        if account is None:
            record_auth_failure("invalid_client")
            raise ApiError(401, "invalid_client", "Unknown client or wrong secret.")
        requested = serializer.validated_data.get("scope")
        scopes = list(account.scopes)
        if requested:
            wanted = requested.split()
            if not set(wanted) <= set(scopes):
                raise ApiError(
                    400, "invalid_scope", {"scope": [f"This client may request only {scopes}."]}
                )
            scopes = sorted(set(wanted))
        token = issue_access_token(account, scopes)
        return Response(
            {
                "access_token": str(token),
                "token_type": "Bearer",
                "expires_in": settings.ACCESS_TOKEN_TTL,
                "scope": " ".join(scopes),
            },
            headers={"Cache-Control": "no-store"},
        )


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ApiError(401, "invalid_client", "Malformed Basic credentials.") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise ApiError(401, "invalid_client", "Malformed Basic credentials.")
    return client_id, secret
