"""POST /api/v1/webhooks/{source}: events from partners that sign their requests (Standard
Webhooks) instead of holding a bearer token.

Order of checks: body size (413, before any HMAC is computed), signature headers and
signature (401; both in identity.webhook_signing), then the same JSON parsing, validation
and idempotent intake as POST /api/v1/events. `webhook-id` is the idempotency key. An
unknown source answers exactly like a wrong signature (401), so the answers do not reveal
which sources exist. The throttle counts per source, and only signed requests: unsigned
floods cannot use up a partner's quota.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import parsers, permissions
from rest_framework.request import Request
from rest_framework.views import APIView

from comcenter.lib.errors import ErrorSerializer
from comcenter.lib.wire import IDEMPOTENCY_KEY_PATTERN, IDEMPOTENCY_KEY_RULE
from events.intake import (
    accept_and_respond,
    parse_json_body,
    refuse_if_intake_paused,
    validate_event,
)
from events.serializers import EventAcceptedSerializer, EventInSerializer
from identity.auth import HasScope, request_caller
from identity.throttles import WebhookThrottle
from identity.webhook_signing import WebhookSignatureAuthentication

_SIGNATURE_HEADERS = [
    OpenApiParameter(
        "webhook-id",
        str,
        OpenApiParameter.HEADER,
        required=True,
        description=f"Unique message id: the event's idempotency key ({IDEMPOTENCY_KEY_RULE}; "
        "a body `idempotency_key`, if any, must equal it).",
        pattern=IDEMPOTENCY_KEY_PATTERN,
    ),
    OpenApiParameter(
        "webhook-timestamp",
        str,
        OpenApiParameter.HEADER,
        required=True,
        description="Whole seconds since the Unix epoch; accepted within ±300 s of our clock.",
        pattern="^[0-9]{1,12}$",
    ),
    OpenApiParameter(
        "webhook-signature",
        str,
        OpenApiParameter.HEADER,
        required=True,
        description="Space-separated `v1,<base64>` signatures; one must match a secret of "
        "the source (several secrets during a rotation).",
    ),
    OpenApiParameter("X-Request-ID", str, OpenApiParameter.HEADER, required=False),
]


class WebhookApi(APIView):
    """POST /api/v1/webhooks/{source}"""

    authentication_classes = [WebhookSignatureAuthentication]
    permission_classes = [permissions.IsAuthenticated, HasScope]
    required_scope = "events:write"
    throttle_classes = [WebhookThrottle]
    parser_classes: list[type[parsers.BaseParser]] = []

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        refuse_if_intake_paused()
        super().initial(request, *args, **kwargs)

    @extend_schema(
        operation_id="webhooks_create",
        summary="Submit an event signed per Standard Webhooks",
        description=(
            "The body is an event as for POST /api/v1/events. The body size is checked "
            "before the signature; an unknown source is answered like a wrong signature."
        ),
        # The view reads the raw body itself (no parser_classes), so drf-spectacular would
        # publish no body at all: the media type is named here.
        request={"application/json": EventInSerializer},
        parameters=[
            OpenApiParameter(
                "source",
                str,
                OpenApiParameter.PATH,
                description="The partner's name, as configured in WEBHOOK_SECRETS.",
            ),
            *_SIGNATURE_HEADERS,
        ],
        responses={
            202: EventAcceptedSerializer,
            200: OpenApiResponse(EventAcceptedSerializer, "Duplicate of an earlier webhook-id"),
            400: OpenApiResponse(
                ErrorSerializer,
                "Malformed JSON, a member named twice, invalid fields, or a body "
                "`idempotency_key` that differs from webhook-id",
            ),
            401: OpenApiResponse(
                ErrorSerializer,
                "Missing or malformed signature headers, a timestamp outside the tolerance, "
                "a signature matching no secret, or an unknown source",
            ),
            409: OpenApiResponse(ErrorSerializer, "webhook-id reused with another payload"),
            413: OpenApiResponse(ErrorSerializer, "Body over MAX_EVENT_BYTES"),
            415: OpenApiResponse(ErrorSerializer, "Body not application/json"),
            422: OpenApiResponse(
                ErrorSerializer, "Unknown event type (the detail names the known ones)"
            ),
            429: OpenApiResponse(ErrorSerializer, "Throttled (per source); see Retry-After"),
            503: OpenApiResponse(
                ErrorSerializer,
                "intake_paused (INTAKE_PAUSED is on) or the database unreachable; nothing is "
                "stored; see Retry-After",
            ),
        },
    )
    def post(self, request: Request, source: str) -> HttpResponse:
        parsed = parse_json_body(request, max_bytes=settings.MAX_EVENT_BYTES)
        payload, key = validate_event(parsed, request.META["HTTP_WEBHOOK_ID"])
        return accept_and_respond(request, caller=request_caller(request), payload=payload, key=key)
