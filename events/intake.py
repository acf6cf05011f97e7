"""The intake's steps shared by its two doors, the bearer API (events/apis.py) and the signed
webhooks (events/webhooks.py): the body as JSON, field validation, and the idempotent store
with its answer."""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from django.utils.module_loading import import_string
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from comcenter.lib.body import body_read
from comcenter.lib.errors import ApiError
from comcenter.lib.latency import ack_latency_record
from comcenter.lib.metrics import ACK_LATENCY, EVENTS
from comcenter.lib.wire import IDEMPOTENCY_KEY_RULE, idempotency_key_valid, quoted
from events import services
from events.models import Event, EventStatus
from events.serializers import (
    EventInSerializer,
    find_unstorable,
    internal_value,
    text_is_storable,
)
from flags.services import flag_is_on
from identity.caller import Caller
from identity.idp import idp_caller_prefix

PENDING_RETRY_AFTER_SECONDS = 60
# How long a client is asked to wait while INTAKE_PAUSED is on: an operator or the guard
# decides when it lifts, so this is a polite polling interval, not a promise.
INTAKE_PAUSED_RETRY_AFTER_SECONDS = 30
# The outcomes of every answer that stores or finds an event, resolved once: a `labels()`
# lookup per request costs more than the increment.
_ACCEPTED = EVENTS.labels(outcome="accepted", reason="")
_DUPLICATE = EVENTS.labels(outcome="duplicate", reason="")


def _reject(status_code: int, code: str, detail: Any, reason: str | None = None) -> ApiError:
    EVENTS.labels(outcome="rejected", reason=reason or code).inc()
    return ApiError(status_code, code, detail)


def refuse_if_intake_paused() -> None:
    """503 `intake_paused` while the flag is on, before authentication and parsing, so a
    paused intake stores nothing and costs no more than the cached flag read."""
    if flag_is_on("INTAKE_PAUSED"):
        EVENTS.labels(outcome="rejected", reason="intake_paused").inc()
        raise ApiError(
            503,
            "intake_paused",
            "Intake is paused (INTAKE_PAUSED); nothing was stored. Retry later.",
            headers={"Retry-After": str(INTAKE_PAUSED_RETRY_AFTER_SECONDS)},
        )


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


def parse_json_body(request: Request, *, max_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object, or an ApiError with a precise status.

    Reads the raw body ourselves (DRF's JSONParser turns deep nesting into a 500 and knows
    nothing of our size limit); callers that sign bodies verify the same raw bytes."""
    content_type = request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise _reject(415, "unsupported_media_type", "Send the body as application/json.")
    body = body_read(request, max_bytes=max_bytes)
    overflowed: list[float] = []

    def _float(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):  # 1e999: not refused here, found by find_unstorable
            overflowed.append(value)
        return value

    try:
        text = body.decode("utf-8")
        parsed = json.loads(
            text, parse_constant=_reject_constant, parse_float=_float, object_pairs_hook=_object
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
    problem = (
        None if text_is_storable(text, overflowed=bool(overflowed)) else find_unstorable(parsed)
    )
    if problem:
        raise _reject(400, "invalid_fields", {"body": [problem]}, "unstorable_value")
    return parsed


@functools.cache
def _event_validator() -> EventInSerializer:
    """One serializer per process, used only through `run_validation` (or the fast path of
    events/serializers.py, which reads its fields), neither keeping state on the instance:
    building a serializer deep-copies all its fields, a large share of the
    ack path's CPU when done per request (bench/NOTES.md)."""
    return EventInSerializer()


def validate_event(parsed: dict[str, Any], header_key: str | None) -> tuple[dict[str, Any], str]:
    """Field validation shared by the bearer intake and the signed webhooks.

    Returns the validated payload (without the idempotency key) and the key."""
    try:
        payload = internal_value(_event_validator(), parsed)
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
    validator = _data_validator(payload["event_type"])
    if validator is not None:
        try:
            validator(payload["data"])
        except ValidationError as exc:
            raise _reject(400, "invalid_fields", {"data": exc.detail}, "invalid_fields") from None
    payload["recipient"] = dict(payload["recipient"])
    return payload, key


def _data_validator(event_type: str) -> Callable[[Any], Any] | None:
    """The app-provided check of this event type's `data` (settings.EVENT_DATA_VALIDATORS,
    by dotted path, so that `events` imports no app that consumes its events)."""
    dotted = settings.EVENT_DATA_VALIDATORS.get(event_type)
    return import_string(dotted) if dotted else None


def accept_and_respond(
    request: Request,
    *,
    caller: Caller,
    payload: dict[str, Any],
    key: str,
) -> HttpResponse:
    """Store the event and answer: 202 new, 200 duplicate, 409 conflict (503 when an
    unverified caller's queue is full)."""
    if caller.auth_pending:
        _ensure_pending_capacity()
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
    (_DUPLICATE if result.duplicate else _ACCEPTED).inc()
    started = getattr(request._request, "started_at", None)
    if started is not None and not result.duplicate:
        elapsed = time.perf_counter() - started
        ACK_LATENCY.observe(elapsed)
        ack_latency_record(elapsed)
    return _answer(
        request, body, status.HTTP_200_OK if result.duplicate else status.HTTP_202_ACCEPTED
    )


def _answer(request: Request, body: dict[str, Any], status_code: int) -> HttpResponse:
    """DRF's answer with `body`, rendered now rather than by Django's deferred-rendering path
    when the negotiated renderer is DRF's JSONRenderer: the same bytes, rendered by that
    renderer for the negotiated media type, and the same Content-Type (the renderer's
    media type, as it has no charset); the view adds the same headers to either."""
    renderer = getattr(request, "accepted_renderer", None)
    if type(renderer) is not JSONRenderer or renderer.charset is not None:
        return Response(body, status=status_code)
    content = renderer.render(body, request.accepted_media_type, {})
    return HttpResponse(content, status=status_code, content_type=renderer.media_type)


def _ensure_pending_capacity() -> None:
    """At most AUTH_PENDING_MAX_PER_ISSUER unverified events per issuer, so an outage cannot
    become a storage attack. Concurrent requests may overshoot by a few: a soft cap."""
    cap = settings.AUTH_PENDING_MAX_PER_ISSUER
    held = (
        Event.objects.filter(
            status=EventStatus.AUTH_PENDING, caller__startswith=idp_caller_prefix()
        )
        .values("pk")[:cap]
        .count()
    )
    if held >= cap:
        EVENTS.labels(outcome="rejected", reason="auth_pending_full").inc()
        raise ApiError(
            503,
            "auth_pending_full",
            "The identity provider is unreachable and the queue of unverified events is "
            "full; retry later.",
            headers={"Retry-After": str(PENDING_RETRY_AFTER_SECONDS)},
        )
