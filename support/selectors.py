"""The numbers of support routing, for the operator dashboard (the console calls
`support_metrics`). Read on demand over a time window, never on every /metrics scrape: the
group-bys walk the window's helpdesk messages and attempts."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count

from comcenter.lib.db import db_now
from delivery.models import Attempt, AttemptOutcome, Message, MessageState
from support.helpdesk import RichpanelProvider
from support.models import Ticket
from support.replies import ROUTING_TEMPLATE
from templates.models import Channel, Template

REPLY_OUTCOMES = (MessageState.SENT, MessageState.DRY_RUN)


def support_metrics(*, since: datetime | None = None) -> dict[str, Any]:
    """Over the window from `since` (default: the last 24 hours) to now:

    - `tickets_by_intent`: {intent: tickets classified};
    - `replies`: [{template, tier, sent, dry_run}] of auto-replies that went out (or would
      have, in dry run), by template;
    - `replies_blocked_by_gate`: {reason: replies stopped}, reasons as the gates name them;
    - `tier2`: {"match": n, "no_match": n} of tickets whose rule planned a tier-2 reply;
    - `helpdesk_errors`: {response code: failed calls} ("429" for the helpdesk's throttling,
      "timeout", "connection_error", "5xx" codes, ...), and `helpdesk_429s` alone."""
    since = since or db_now() - timedelta(hours=24)
    tickets = Ticket.objects.filter(created_at__gte=since)
    by_intent = dict(tickets.values_list("intent").annotate(n=Count("id")).order_by("intent"))
    tier2 = dict(
        tickets.filter(order_match__isnull=False)
        .values_list("order_match")
        .annotate(n=Count("id"))
        .order_by()
    )
    replies = Message.objects.filter(channel=Channel.HELPDESK, updated_at__gte=since).exclude(
        template_key=ROUTING_TEMPLATE
    )
    sent: dict[str, dict[str, int]] = {}
    for key, state, n in (
        replies.filter(state__in=REPLY_OUTCOMES)
        .values_list("template_key", "state")
        .annotate(n=Count("id"))
        .order_by("template_key")
    ):
        sent.setdefault(key, dict.fromkeys(REPLY_OUTCOMES, 0))[state] = n
    tiers = dict(Template.objects.filter(key__in=sent).values_list("key", "tier"))
    blocked = dict(
        replies.filter(state=MessageState.BLOCKED)
        .values_list("last_error")
        .annotate(n=Count("id"))
        .order_by("last_error")
    )
    errors = dict(
        Attempt.objects.filter(
            provider=RichpanelProvider.name,
            finished_at__gte=since,
            outcome__in=(AttemptOutcome.TRANSIENT, AttemptOutcome.PERMANENT),
        )
        .values_list("response_code")
        .annotate(n=Count("id"))
        .order_by("response_code")
    )
    return {
        "since": since.isoformat(),
        "tickets_by_intent": by_intent,
        "replies": [
            {"template": key, "tier": tiers.get(key), **counts} for key, counts in sent.items()
        ],
        "replies_blocked_by_gate": blocked,
        "tier2": {"match": tier2.get(True, 0), "no_match": tier2.get(False, 0)},
        "helpdesk_errors": errors,
        "helpdesk_429s": errors.get("429", 0),
    }
