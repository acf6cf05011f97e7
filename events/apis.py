"""The REST API of the events app: intake and event status."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpResponse
from django.utils.module_loading import import_string
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import parsers, permissions
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from comcenter.lib.errors import ApiError, ErrorSerializer
from comcenter.lib.wire import IDEMPOTENCY_KEY_PATTERN, IDEMPOTENCY_KEY_RULE
from events.intake import (
    accept_and_respond,
    parse_json_body,
    refuse_if_intake_paused,
    validate_event,
)
from events.models import Event
from events.serializers import EventAcceptedSerializer, EventInSerializer, EventOutSerializer
from identity.auth import HasScope, request_caller
from identity.throttles import IntakeThrottle

_ERROR_TEXT = {
    400: (
        "Malformed JSON, a member named twice in one object, invalid fields (field-level "
        "detail), an idempotency key breaking the key rule, or body and Idempotency-Key "
        "header keys that disagree"
    ),
    401: "Missing, expired or forged credentials",
    403: "Valid identity without the needed scope",
    404: "No such event for this caller",
    409: "Idempotency key reused with another payload",
    413: "Body over MAX_EVENT_BYTES",
    415: "Body is not application/json",
    422: "Unknown event type (the detail names the known ones)",
    429: "Throttled; see Retry-After",
    503: (
        "intake_paused (INTAKE_PAUSED is on), the database unreachable, or the identity "
        "provider unreachable and its queue of unverified events full; nothing is stored; "
        "see Retry-After"
    ),
}


# The event of the walk-through, published as the request example: Swagger's "Try it out"
# starts from it, and the contract run in CI (tests/contract/) sends it and expects a 202.
EVENT_EXAMPLE = OpenApiExample(
    "deadline_soon",
    request_only=True,
    value={
        "event_type": "deadline_soon",
        "idempotency_key": "scholarship-api:evt-81f3",
        "ordering_key": "student-42",
        "sequence": 7,
        "recipient": {
            "id": "student-42",
            "email": "a@example.org",
            "phone": "+12025550123",
            "locale": "en",
        },
        "data": {"scholarship": "STEM Futures", "deadline": "2026-12-01"},
        "occurred_at": "2026-11-21T20:00:00Z",
        "expires_at": "2026-12-01T00:00:00Z",
    },
)


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: OpenApiResponse(ErrorSerializer, _ERROR_TEXT[code]) for code in codes}


class EventListCreateApi(APIView):
    """POST /api/v1/events"""

    permission_classes = [permissions.IsAuthenticated, HasScope]
    required_scope = "events:write"
    throttle_classes = [IntakeThrottle]
    parser_classes: list[type[parsers.BaseParser]] = []

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        refuse_if_intake_paused()
        super().initial(request, *args, **kwargs)

    def perform_content_negotiation(
        self, request: Request, force: bool = False
    ) -> tuple[BaseRenderer, str]:
        """DRF's answer without its Accept parsing for what clients send nearly always (no
        Accept, `*/*`, or the first renderer's media type, and no format override): the first
        renderer and its media type, which is what DRF's negotiation returns for those."""
        accept = request.META.get("HTTP_ACCEPT", "*/*")
        # format_kwarg is unset when initial() stopped early (the paused intake).
        if not getattr(self, "format_kwarg", None) and not request.META.get("QUERY_STRING"):
            renderer = self.get_renderers()[0]
            if accept == "*/*" or accept == renderer.media_type:
                return renderer, renderer.media_type
        return super().perform_content_negotiation(request, force)

    @extend_schema(
        operation_id="events_create",
        summary="Submit an event",
        # The view reads the raw body itself (no parser_classes), so drf-spectacular would
        # publish no body at all: the media type is named here.
        request={"application/json": EventInSerializer},
        examples=[EVENT_EXAMPLE],
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="Instead of the body's idempotency_key (or equal to it). "
                f"{IDEMPOTENCY_KEY_RULE}.",
                pattern=IDEMPOTENCY_KEY_PATTERN,
            ),
            OpenApiParameter("X-Request-ID", str, OpenApiParameter.HEADER, required=False),
        ],
        responses={
            202: EventAcceptedSerializer,
            200: OpenApiResponse(EventAcceptedSerializer, "Duplicate of an earlier event"),
            **_errors(400, 401, 403, 409, 413, 415, 422, 429, 503),
        },
    )
    def post(self, request: Request) -> HttpResponse:
        parsed = parse_json_body(request, max_bytes=settings.MAX_EVENT_BYTES)
        payload, key = validate_event(parsed, request.META.get("HTTP_IDEMPOTENCY_KEY"))
        return accept_and_respond(request, caller=request_caller(request), payload=payload, key=key)


def _messages_for(event: Event) -> list[dict[str, Any]]:
    return import_string(settings.EVENT_MESSAGES_SELECTOR)(event)


class EventDetailApi(APIView):
    """GET /api/v1/events/{id}"""

    permission_classes = [permissions.IsAuthenticated, HasScope]
    required_scope = "events:read"

    @extend_schema(
        operation_id="events_retrieve",
        summary="An event, its messages and their states",
        responses={200: EventOutSerializer, **_errors(401, 403, 404, 429)},
    )
    def get(self, request: Request, event_id: str) -> Response:
        event = Event.objects.filter(uid=event_id, caller=request_caller(request).caller_id).first()
        if event is None:
            raise ApiError(404, "not_found", "No event with this id for this caller.")
        data = {
            "uid": event.uid,
            "status": event.status,
            "event_type": event.event_type,
            "idempotency_key": event.idempotency_key,
            "ordering_key": event.ordering_key,
            "sequence": event.sequence,
            "request_id": event.request_id,
            "received_at": event.received_at,
            "messages": _messages_for(event),
        }
        return Response(EventOutSerializer(data).data)
