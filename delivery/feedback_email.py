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

from typing import Any

from anymail.signals import AnymailTrackingEvent, EventType, RejectReason

from delivery.feedback import Feedback, feedback_receive
from delivery.models import ReceiptKind

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
