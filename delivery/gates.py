"""The gates a message passes right before its send (expiry, suppression, template state,
kill switches), and the ticker's expiry of waiting messages."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from django.db.models.functions import Now

from delivery.hooks import hooks_for
from delivery.models import WAITING_STATES, Message, MessageState, Suppression
from delivery.suppressions import suppression_categories, suppression_stops
from delivery.transitions import Change, message_transition
from flags.services import flag_is_on
from templates.models import Category, Template
from templates.selectors import template_for

# The reasons (stored as last_error) of the blocks an operator can lift by fixing the
# template: such a message may be requeued once its template is enabled and whitelisted.
TEMPLATE_DISABLED = "template disabled"
TEMPLATE_NOT_WHITELISTED = "template not whitelisted"
TEMPLATE_BLOCKS = (TEMPLATE_DISABLED, TEMPLATE_NOT_WHITELISTED)


def message_gate(
    *, message: Message, now: datetime, suppressed: Mapping[str, frozenset[str]]
) -> tuple[str, str] | None:
    """(state, reason) when a gate stops the message, read right before its send; None lets
    it through. `suppressed` holds the batch's suppressed addresses and their categories
    (`suppressed_addresses`). Loads the message's template when the claim did not."""
    if message.expires_at is not None and message.expires_at <= now:
        return MessageState.EXPIRED, "expires_at passed before dispatch"
    categories = suppression_categories(
        suppressed, channel=message.channel, address=message.to_address
    )
    if Suppression.Category.ALL in categories:
        return MessageState.SUPPRESSED, "address is suppressed"
    template = message.template or template_for(
        key=message.template_key, locale=message.locale or None
    )
    if template is None:
        return MessageState.DEAD, f"no template {message.template_key!r}"
    message.template = template
    if suppression_stops(categories=categories, template_category=template.category):
        return MessageState.SUPPRESSED, "address opted out of promotional messages"
    stop = hooks_for(message.event.event_type).gate(message=message, template=template)
    if stop is not None:
        return stop
    stop = _template_gate(template, message.channel)
    if stop is not None:
        return stop
    if flag_is_on("DISPATCH_PAUSED"):
        return MessageState.HELD, "DISPATCH_PAUSED is on"
    return None


def _template_gate(template: Template, channel: str) -> tuple[str, str] | None:
    if template.channel != channel:
        return MessageState.DEAD, f"template is for {template.channel}, the route for {channel}"
    if template.current_version_id is None:
        return MessageState.DEAD, "template has no version"
    if not template.enabled:
        return MessageState.BLOCKED, TEMPLATE_DISABLED
    if not template.whitelisted:
        return MessageState.BLOCKED, TEMPLATE_NOT_WHITELISTED
    if template.category == Category.PROMOTIONAL and not flag_is_on("PROMO_SENDS"):
        return MessageState.BLOCKED, "PROMO_SENDS is off"
    if template.tier >= 1 and (not flag_is_on("AUTOMATION_ENABLED") or flag_is_on("SAFE_MODE")):
        return MessageState.BLOCKED, f"tier {template.tier} needs AUTOMATION_ENABLED, not SAFE_MODE"
    return None


def messages_expire_due(*, limit: int = 500) -> int:
    """Waiting messages past their `expires_at` become expired without waiting for their turn:
    they will never be sent, so they need not hold their key either."""
    due = list(
        Message.objects.filter(state__in=WAITING_STATES, expires_at__lte=Now())
        .select_related("event")
        .order_by("expires_at")[:limit]
    )
    return len(
        message_transition(
            changes=[Change(message=m) for m in due],
            state=MessageState.EXPIRED,
            reason="expires_at passed before dispatch",
            common={"next_attempt_at": Now()},
        )
    )
