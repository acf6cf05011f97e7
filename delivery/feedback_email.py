"""Email receipts through django-anymail's own tracking webhooks.

Anymail serves /anymail/<esp>/tracking/ (comcenter/urls.py mounts the ESPs named in
EMAIL_TRACKING_ESPS), checks each request with its own validators (HTTP basic auth from
ANYMAIL_WEBHOOK_SECRET, plus the ESP's signature where it has one, e.g. Mailgun's HMAC with
ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY; a failed check answers 400), parses the ESP's payload
into `AnymailTrackingEvent`s and sends its `tracking` signal; `tracking_received` (connected
in delivery/apps.py) turns each event into a `Feedback` for delivery/feedback.py. The
message id anymail reports is the one the send recorded (`anymail_status.message_id`, the
attempt's `provider_message_id`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from anymail import urls as anymail_urls
from anymail.exceptions import AnymailConfigurationError
from anymail.signals import AnymailTrackingEvent, EventType, RejectReason
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path

from comcenter.lib.errors import json_error
from delivery.feedback import Feedback, feedback_receive
from delivery.models import ReceiptKind

log = logging.getLogger(__name__)

# Our email provider's name (delivery/providers/email.py): the attempts' `provider`.
EMAIL_PROVIDER = "email"

KINDS: dict[str, str] = {
    EventType.DELIVERED: ReceiptKind.DELIVERED,
    EventType.BOUNCED: ReceiptKind.BOUNCED_HARD,
    EventType.DEFERRED: ReceiptKind.BOUNCED_SOFT,
    EventType.REJECTED: ReceiptKind.REJECTED,
    EventType.FAILED: ReceiptKind.FAILED,
    EventType.COMPLAINED: ReceiptKind.COMPLAINED,
}
# A rejection for one of these reasons says the address itself is bad (Postmark's
# BadEmailAddress, an ESP's own bounce list): suppressed like a hard bounce.
HARD_REJECTIONS = frozenset({RejectReason.INVALID, RejectReason.BOUNCED})
# Bounces that anymail reports as `bounced` but the ESP calls temporary, by the ESP's own
# bounce type field ({esp: (field, values)}): Postmark's SoftBounce "might also receive
# HardBounce later" (anymail's own note).
SOFT_BOUNCE_TYPES: dict[str, tuple[str, frozenset[str]]] = {
    "postmark": ("Type", frozenset({"SoftBounce"})),
}


def receipt_kind(event: AnymailTrackingEvent, esp: str) -> str | None:
    """The receipt kind of one anymail event; None for events that are not receipts
    (queued, opened, clicked ...)."""
    kind = KINDS.get(event.event_type)
    if kind == ReceiptKind.REJECTED and event.reject_reason in HARD_REJECTIONS:
        return ReceiptKind.BOUNCED_HARD
    if kind == ReceiptKind.BOUNCED_HARD and esp in SOFT_BOUNCE_TYPES:
        field, soft = SOFT_BOUNCE_TYPES[esp]
        raw = event.esp_event if isinstance(event.esp_event, dict) else {}
        if raw.get(field) in soft:
            return ReceiptKind.BOUNCED_SOFT
    return kind


def tracking_received(
    sender: Any, event: AnymailTrackingEvent, esp_name: str, **kwargs: Any
) -> None:
    """anymail's `tracking` signal: hand a receipt to the receiver. An event without a
    message id cannot be matched and is dropped (answered 200: the ESP must not retry it)."""
    esp = esp_name.lower().replace(" ", "_")
    kind = receipt_kind(event, esp)
    if kind is None or not event.message_id:
        return
    code = str(event.reject_reason or "")
    feedback_receive(
        feedback=Feedback(
            provider=EMAIL_PROVIDER,
            provider_message_id=str(event.message_id),
            kind=kind,
            source=f"anymail:{esp}",
            occurred_at=event.timestamp,
            code=code,
            dedupe_key=f"{esp}:{event.event_id}:{kind}" if event.event_id else "",
        )
    )


def tracking_urlpatterns(esps: list[str]) -> list[URLPattern]:
    """anymail's tracking URL patterns of these ESPs (anymail's names), each view wrapped by
    `_bad_body_is_400`. Only configured ESPs are served: an ESP's view built without its
    signing key raises ImproperlyConfigured on every request (a 500)."""
    wanted = {f"{esp}_tracking_webhook" for esp in esps}
    return [
        path(str(p.pattern), _bad_body_is_400(p.callback), name=p.name)
        for p in anymail_urls.urlpatterns
        if isinstance(p, URLPattern) and p.name in wanted
    ]


def _bad_body_is_400(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """anymail checks the request first (a failed check is its SuspiciousOperation: 400) and
    then parses the body; a body its parser cannot read (not JSON, a field missing, an
    inbound payload posted to the tracking URL) raises out of the view as a 500. Answered
    as 400 instead: the ESP's retry would fail the same way."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except (ValueError, KeyError, TypeError, AnymailConfigurationError) as exc:
            log.warning("unreadable ESP tracking payload", extra={"error": type(exc).__name__})
            return json_error(400, "invalid_request", "tracking payload not readable")

    return wrapped
