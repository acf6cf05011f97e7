"""The REST API of the events app: tokens, intake, and event status."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import time
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import parsers, permissions, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from comcenter.lib.errors import ApiError
from comcenter.lib.latency import ack_latency_record
from comcenter.lib.metrics import ACK_LATENCY, EVENTS
from comcenter.lib.wire import (
    IDEMPOTENCY_KEY_PATTERN,
    IDEMPOTENCY_KEY_RULE,
    BodyTooLarge,
    idempotency_key_valid,
    quoted,
    request_body_read,
)
from events import services
from events.auth import HasScope, issue_access_token, record_auth_failure
from events.identity import Caller
from events.models import Event
from events.serializers import (
    ErrorSerializer,
    EventAcceptedSerializer,
    EventInSerializer,
    EventOutSerializer,
    TokenInSerializer,
    TokenOutSerializer,
    find_unstorable,
)
from events.throttles import IntakeThrottle, TokenThrottle

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
        "The database is unreachable, or the identity provider is and its queue of unverified "
        "events is full; nothing was stored; see Retry-After"
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


def _reject(status_code: int, code: str, detail: Any, reason: str | None = None) -> ApiError:
    EVENTS.labels(outcome="rejected", reason=reason or code).inc()
    return ApiError(status_code, code, detail)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


class DuplicateMember(ValueError):
    """A JSON object names a member twice. JSON parsers disagree on which one wins (the last,
    the first, an error), so a signer and we could read different events from the same
    bytes: refused, never resolved."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise DuplicateMember(name)
            seen.add(name)
    return result


def body_read(request: Request, *, max_bytes: int) -> bytes:
    """The raw body (chunked or not), or a 413 when over `max_bytes`."""
    try:
        return request_body_read(request, max_bytes=max_bytes)
    except BodyTooLarge:
        raise _reject(
            413, "payload_too_large", f"The body may be at most {max_bytes} bytes."
        ) from None


def parse_json_body(request: Request, *, max_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object, or an ApiError with a precise status.

    Reads the raw body ourselves (DRF's JSONParser turns deep nesting into a 500 and knows
    nothing of our size limit); callers that sign bodies verify the same raw bytes."""
    content_type = request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise _reject(415, "unsupported_media_type", "Send the body as application/json.")
    body = body_read(request, max_bytes=max_bytes)
    try:
        parsed = json.loads(
            body.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_object
        )
    except UnicodeDecodeError:
        raise _reject(400, "malformed_json", "The body is not valid UTF-8.") from None
    except RecursionError:
        raise _reject(400, "malformed_json", "The JSON is nested too deeply.") from None
    except DuplicateMember as exc:
        detail = {"body": [f"Member {quoted(exc.name)!r} appears twice in one object."]}
        raise _reject(400, "invalid_fields", detail, "duplicate_member") from None
    except ValueError as exc:
        raise _reject(400, "malformed_json", f"The body is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise _reject(400, "malformed_json", "The body must be a JSON object.", "malformed_json")
    problem = find_unstorable(parsed)
    if problem:
        raise _reject(400, "invalid_fields", {"body": [problem]}, "unstorable_value")
    return parsed


@functools.cache
def _event_validator() -> EventInSerializer:
    """One serializer per process, used only through `run_validation`, which keeps no state
    on the instance: building a serializer deep-copies all its fields, a sixth of the ack
    path's CPU when done per request."""
    return EventInSerializer()


def validate_event(parsed: dict[str, Any], header_key: str | None) -> tuple[dict[str, Any], str]:
    """Field validation shared by the bearer intake and the signed webhooks.

    Returns the validated payload (without the idempotency key) and the key."""
    try:
        payload = dict(_event_validator().run_validation(parsed))
    except ValidationError as exc:
        raise _reject(400, "invalid_fields", exc.detail, "invalid_fields") from None
    body_key = payload.pop("idempotency_key", None)
    for given in (body_key, header_key):
        if given and not idempotency_key_valid(given):
            raise _reject(
                400,
                "invalid_fields",
                {"idempotency_key": [f"An idempotency key is {IDEMPOTENCY_KEY_RULE}."]},
                "invalid_fields",
            )
    if header_key is not None and body_key is not None and header_key != body_key:
        raise _reject(
            400,
            "invalid_fields",
            {"idempotency_key": ["The body and the Idempotency-Key header disagree."]},
            "invalid_fields",
        )
    key = body_key if body_key is not None else header_key
    if not key:
        raise _reject(
            400,
            "invalid_fields",
            {"idempotency_key": ["Required, in the body or the Idempotency-Key header."]},
            "invalid_fields",
        )
    known = services.known_event_types()
    if payload["event_type"] not in known:
        raise _reject(
            422,
            "unknown_event_type",
            {"event_type": [f"Unknown event type. Known types: {sorted(known)}."]},
        )
    payload["recipient"] = dict(payload["recipient"])
    return payload, key


def accept_and_respond(
    request: Request,
    *,
    caller: Caller,
    payload: dict[str, Any],
    key: str,
) -> Response:
    """Store the event and answer: 202 new, 200 duplicate, 409 conflict."""
    try:
        result = services.event_accept(
            caller=caller.caller_id,
            payload=payload,
            idempotency_key=key,
            request_id=request.request_id,  # type: ignore[attr-defined]
            auth_pending=caller.auth_pending,
            pending_token=caller.raw_token,
        )
    except services.IdempotencyConflict as exc:
        EVENTS.labels(outcome="conflict", reason="payload_mismatch").inc()
        raise ApiError(
            409,
            "idempotency_conflict",
            {
                "idempotency_key": ["Already used with a different payload."],
                "event_id": str(exc.event.uid),
            },
        ) from None
    event = result.event
    body = {
        "id": str(event.uid),
        "status": event.status,
        "duplicate": result.duplicate,
        "request_id": request.request_id,  # type: ignore[attr-defined]
    }
    EVENTS.labels(outcome="duplicate" if result.duplicate else "accepted", reason="").inc()
    started = getattr(request._request, "started_at", None)
    if started is not None and not result.duplicate:
        elapsed = time.perf_counter() - started
        ACK_LATENCY.observe(elapsed)
        ack_latency_record(elapsed)
    return Response(
        body, status=status.HTTP_200_OK if result.duplicate else status.HTTP_202_ACCEPTED
    )


class EventListCreateApi(APIView):
    """POST /api/v1/events"""

    permission_classes = [permissions.IsAuthenticated, HasScope]
    required_scope = "events:write"
    throttle_classes = [IntakeThrottle]
    parser_classes: list[type[parsers.BaseParser]] = []

    @extend_schema(
        operation_id="events_create",
        summary="Submit an event",
        # The views read the raw body themselves (no parser_classes), so drf-spectacular
        # would publish no body at all: the media type is named here.
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
    def post(self, request: Request) -> Response:
        parsed = parse_json_body(request, max_bytes=settings.MAX_EVENT_BYTES)
        payload, key = validate_event(parsed, request.META.get("HTTP_IDEMPOTENCY_KEY"))
        return accept_and_respond(request, caller=request.user, payload=payload, key=key)


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
        event = Event.objects.filter(uid=event_id, caller=request.user.caller_id).first()
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
        responses={200: TokenOutSerializer, **_errors(400, 401, 415, 429)},
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
