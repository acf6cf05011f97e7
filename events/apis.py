"""The REST API of the events app: intake and event status."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import parsers, permissions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from comcenter.lib.errors import ApiError, ErrorSerializer
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
    400: "Malformed JSON or invalid fields (field-level detail)",
    401: "Missing, expired or forged credentials",
    403: "Valid identity without the needed scope",
    404: "No such event for this caller",
    409: "Idempotency key reused with another payload",
    413: "Body over MAX_EVENT_BYTES",
    415: "Body is not application/json",
    422: "Unknown event type (the detail names the known ones)",
    429: "Throttled; see Retry-After",
    503: "intake_paused (INTAKE_PAUSED is on: nothing is stored), or the identity provider "
    "unreachable and its queue of unverified events full; see Retry-After",
}


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

    @extend_schema(
        operation_id="events_create",
        summary="Submit an event",
        request=EventInSerializer,
        parameters=[
            OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False),
            OpenApiParameter("X-Request-ID", str, OpenApiParameter.HEADER, required=False),
        ],
        responses={
            202: EventAcceptedSerializer,
            200: OpenApiResponse(EventAcceptedSerializer, "Duplicate of an earlier event"),
            **_errors(400, 401, 403, 409, 413, 415, 422, 429, 503),
        },
    )
    def post(self, request: Request) -> Response:
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
