"""The suppressions API for services: look up, add and lift the suppressions of one address.

There is no listing of every suppressed address: addresses are personal data, and a service
knows the address it asks about. The console lists and searches them for operators. The
address travels in the query of GET and DELETE (DELETE bodies are dropped by many clients and
cannot be described in OpenAPI 3.0); no log line of ours carries a query string or an
address (deploy/README.md: the access log logs the path only)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import parsers, permissions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from comcenter.lib.errors import ApiError, ErrorSerializer
from delivery.models import Suppression
from delivery.serializers import (
    SuppressionInSerializer,
    SuppressionLiftSerializer,
    SuppressionListSerializer,
    SuppressionLookupSerializer,
    SuppressionOutSerializer,
)
from delivery.suppressions import suppression_ensure, suppression_find, suppression_remove
from events.intake import parse_json_body
from identity.auth import HasScope, request_caller
from identity.throttles import SuppressionThrottle

_ERROR_TEXT = {
    400: (
        "Malformed JSON, or invalid fields (field-level detail): an unknown channel, "
        "category or reason, an address that is not an email address (email) or an E.164 "
        "number (sms), an empty lifting reason, an unknown field"
    ),
    401: "Missing, expired or forged credentials",
    403: "Valid identity without the needed scope (suppressions:read or suppressions:write)",
    404: "No suppression of this category for this address",
    413: "Body over MAX_EVENT_BYTES",
    415: "Body is not application/json",
    429: "Throttled; see Retry-After",
}


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: OpenApiResponse(ErrorSerializer, _ERROR_TEXT[code]) for code in codes}


# Answered by the web server before the application, in its own format (no JSON body): an
# address and a reason of the allowed lengths fit, but non-ASCII ones grow up to 12-fold
# when percent-encoded.
URI_TOO_LONG = {414: OpenApiResponse(description="Request line over the web server's limit")}


def _valid(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _shown(row: Suppression) -> dict[str, Any]:
    return dict(SuppressionOutSerializer(row).data)


class SuppressionApi(APIView):
    """GET, POST and DELETE /api/v1/suppressions"""

    permission_classes = [permissions.IsAuthenticated, HasScope]
    required_scopes = {
        "GET": "suppressions:read",
        "HEAD": "suppressions:read",
        "OPTIONS": "suppressions:read",
        "POST": "suppressions:write",
        "DELETE": "suppressions:write",
    }
    throttle_classes = [SuppressionThrottle]
    # POST reads its raw body itself (events.intake.parse_json_body: size, depth, NUL).
    parser_classes: list[type[parsers.BaseParser]] = []

    @extend_schema(
        operation_id="suppressions_lookup",
        summary="The suppressions of one address",
        parameters=[SuppressionLookupSerializer],
        responses={200: SuppressionListSerializer, **_errors(400, 401, 403, 429), **URI_TOO_LONG},
    )
    def get(self, request: Request) -> Response:
        query = _valid(SuppressionLookupSerializer, request.query_params.dict())
        rows = suppression_find(channel=query["channel"], address=query["address"])
        return Response({"results": [_shown(row) for row in rows.values()]})

    @extend_schema(
        operation_id="suppressions_create",
        summary="Suppress an address (all messages, or promotional ones only)",
        request={"application/json": SuppressionInSerializer},
        examples=[
            OpenApiExample(
                "promotional opt-out",
                request_only=True,
                value={
                    "channel": "email",
                    "address": "a@example.org",
                    "category": "promotional",
                    "reason": "opt_out",
                    "note": "unsubscribed in the app",
                },
            )
        ],
        responses={
            201: SuppressionOutSerializer,
            200: OpenApiResponse(
                SuppressionOutSerializer, "Already suppressed in that category (unchanged)"
            ),
            **_errors(400, 401, 403, 413, 415, 429),
        },
    )
    def post(self, request: Request) -> Response:
        parsed = parse_json_body(request, max_bytes=settings.MAX_EVENT_BYTES)
        body = _valid(SuppressionInSerializer, parsed)
        caller = request_caller(request).caller_id
        row, created = suppression_ensure(**body, actor=caller, source=f"api:{caller}")
        return Response(_shown(row), status=201 if created else 200)

    @extend_schema(
        operation_id="suppressions_lift",
        summary="Lift a suppression (audited with its reason)",
        parameters=[SuppressionLiftSerializer],
        responses={
            204: OpenApiResponse(description="Lifted; sends to the address resume"),
            **_errors(400, 401, 403, 404, 429),
            **URI_TOO_LONG,
        },
    )
    def delete(self, request: Request) -> Response:
        query = _valid(SuppressionLiftSerializer, request.query_params.dict())
        row = suppression_find(channel=query["channel"], address=query["address"]).get(
            query["category"]
        )
        lifted = row is not None and suppression_remove(
            suppression=row, actor=request_caller(request).caller_id, reason=query["reason"]
        )
        if not lifted:
            raise ApiError(404, "not_found", "No suppression of this category for this address.")
        return Response(status=204)
