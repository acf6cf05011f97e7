"""Provider feedback: the one receiver every source of delivery receipts calls (anymail's
tracking webhooks in delivery/feedback_email.py, the SMS status callbacks in
delivery/feedback_sms.py, the send-time classification in delivery/batch.py adds suppressions
itself). A source normalises what its provider said into a `Feedback`; `feedback_receive`
keeps it once, finds the attempt it reports on, moves the message along the table's
receipt edges (`sent -> delivered | undelivered`, `delivered -> undelivered`) and adds the
suppression the kind calls for.

Rules (docs/architecture.md, "Provider feedback"):
- The same receipt twice is one row and at most one move: `dedupe_key` is unique, and a
  replay finds the first row and changes nothing.
- A receipt about a message that never left (dry run) or left no live send (dead, expired
  ...) is kept, as `recorded`, and changes nothing else.
- `undelivered` after `delivered` is a move (an asynchronous bounce after the receiving
  server's acceptance, Twilio's late failure report): the later report of a failure wins.
  `delivered` after `undelivered` is recorded only (out-of-order callbacks must not turn a
  failure into a success).
- A receipt that overtakes our own commit of the send (the provider calls back before the
  attempt row is written) is kept as `pending`; the ticker's `feedback_apply_pending` applies
  it once the attempt is there, and gives up after FEEDBACK_PENDING_HOURS (`unmatched`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models.functions import Now

from comcenter.lib.hashing import sha256_hex
from comcenter.lib.metrics import FEEDBACK_RECEIPTS
from delivery.models import (
    Attempt,
    Message,
    MessageState,
    ProviderReceipt,
    ReceiptKind,
    Suppression,
)
from delivery.suppressions import address_key, suppression_add, suppression_remove
from delivery.transitions import Change, message_transition

log = logging.getLogger(__name__)

K = ReceiptKind
# The state a receipt moves its message to; kinds not named here move nothing (a soft
# bounce: the provider still retries and its final report moves the message; a complaint:
# the message was delivered, the complaint only suppresses).
TARGET_STATE: dict[str, str] = {
    K.DELIVERED: MessageState.DELIVERED,
    K.BOUNCED_HARD: MessageState.UNDELIVERED,
    K.REJECTED: MessageState.UNDELIVERED,
    K.FAILED: MessageState.UNDELIVERED,
    K.OPTED_OUT: MessageState.UNDELIVERED,
    K.UNDELIVERABLE_NUMBER: MessageState.UNDELIVERED,
}
# The permanent suppression a receipt adds (soft bounces: see _soft_bounce).
SUPPRESSES: dict[str, str] = {
    K.BOUNCED_HARD: Suppression.Reason.BOUNCE,
    K.COMPLAINED: Suppression.Reason.COMPLAINT,
    K.OPTED_OUT: Suppression.Reason.OPT_OUT,
    K.UNDELIVERABLE_NUMBER: Suppression.Reason.BOUNCE,
}
# The states in which a message was really handed to a provider and may hear back.
LIVE_STATES = frozenset({MessageState.SENT, MessageState.DELIVERED, MessageState.UNDELIVERED})


@dataclass(frozen=True)
class Feedback:
    """A receipt as every source normalises it. `provider` is our provider's name (the
    `Attempt.provider` of the send: "email", "twilio"), `source` where it came from
    ("anymail:postmark", "twilio:status"), `dedupe_key` the source's own id of the report
    (an ESP event id; for Twilio the sid and status), else derived from id and kind."""

    provider: str
    provider_message_id: str
    kind: str
    source: str
    occurred_at: datetime | None = None
    code: str = ""
    dedupe_key: str = ""

    def key(self) -> str:
        own = self.dedupe_key or f"{self.provider_message_id}:{self.kind}"
        return f"{self.provider}:{own}"[:400]


def feedback_receive(*, feedback: Feedback) -> str:
    """Keep a receipt once and apply it; returns the receipt's state, or "duplicate" for a
    receipt already kept (which changes nothing)."""
    with transaction.atomic():
        receipt, created = ProviderReceipt.objects.get_or_create(
            dedupe_key=feedback.key(),
            defaults={
                "provider": feedback.provider[:50],
                "provider_message_id": feedback.provider_message_id[:255],
                "kind": feedback.kind,
                "code": feedback.code[:50],
                "source": feedback.source[:50],
                "occurred_at": feedback.occurred_at,
                "state": ProviderReceipt.State.PENDING,
            },
        )
        if not created:
            FEEDBACK_RECEIPTS.labels(feedback.provider, feedback.kind, "duplicate").inc()
            return "duplicate"
        state = _apply(receipt)
    FEEDBACK_RECEIPTS.labels(feedback.provider, feedback.kind, state).inc()
    return state


# Seconds between two looks at pending receipts from the ticker (which passes every ~0.25 s).
PENDING_SWEEP_SECONDS = 2.0
_next_sweep = 0.0


def feedback_pending_due() -> None:
    """Ticker hook (settings.TICKER_HOOKS): `feedback_apply_pending` every
    PENDING_SWEEP_SECONDS. Never raises: a failure here must not stop the deliveries."""
    global _next_sweep
    now = time.monotonic()
    if now < _next_sweep:
        return
    _next_sweep = now + PENDING_SWEEP_SECONDS
    try:
        feedback_apply_pending()
    except Exception:
        log.exception("applying pending provider receipts failed")


def feedback_apply_pending(*, limit: int = 200) -> int:
    """Ticker hook: apply the receipts that arrived before their attempt was recorded, and
    give up on those older than FEEDBACK_PENDING_HOURS. Returns how many it applied."""
    cutoff = Now() - timedelta(hours=settings.FEEDBACK_PENDING_HOURS)
    ProviderReceipt.objects.filter(
        state=ProviderReceipt.State.PENDING, received_at__lt=cutoff
    ).update(state=ProviderReceipt.State.UNMATCHED)
    ids = list(
        ProviderReceipt.objects.filter(state=ProviderReceipt.State.PENDING)
        .order_by("received_at")
        .values_list("pk", flat=True)[:limit]
    )
    applied = 0
    for pk in ids:
        with transaction.atomic():
            # Locked, so two tickers (or a ticker and nothing else) never apply one twice.
            receipt = (
                ProviderReceipt.objects.select_for_update()
                .filter(pk=pk, state=ProviderReceipt.State.PENDING)
                .first()
            )
            if receipt is None:
                continue
            state = _apply(receipt)
        if state != ProviderReceipt.State.PENDING:
            applied += 1
            FEEDBACK_RECEIPTS.labels(receipt.provider, receipt.kind, state).inc()
    return applied


def _apply(receipt: ProviderReceipt) -> str:
    """Inside the receipt's transaction: match, move, suppress; saves the receipt's state."""
    message = _message_for(receipt)
    if message is None:
        return ProviderReceipt.State.PENDING
    receipt.message = message
    receipt.address_hash = sha256_hex(
        address_key(channel=message.channel, address=message.to_address)
    )
    changed = False
    if message.state in LIVE_STATES:
        changed = _move(receipt, message) | _suppress(receipt, message)
    receipt.state = ProviderReceipt.State.APPLIED if changed else ProviderReceipt.State.RECORDED
    receipt.save(update_fields=["message", "address_hash", "state"])
    return receipt.state


def _message_for(receipt: ProviderReceipt) -> Message | None:
    attempt = (
        Attempt.objects.filter(
            provider=receipt.provider, provider_message_id=receipt.provider_message_id
        )
        # Spelled out so that the planner matches the partial index whatever the binding.
        .exclude(provider_message_id="")
        .order_by("-id")
        .values_list("message_id", flat=True)
        .first()
    )
    if attempt is None:
        return None
    # Locked for the rest of the receipt's transaction: two receipts of one message (Twilio's
    # delivered and a late undelivered) are applied one after the other, each from the state
    # the other left.
    return Message.objects.select_for_update(of=("self",)).select_related("event").get(pk=attempt)


def _move(receipt: ProviderReceipt, message: Message) -> bool:
    target = TARGET_STATE.get(receipt.kind)
    if target is None:
        return False
    data = {"receipt": receipt.kind, "source": receipt.source, "provider": receipt.provider}
    if receipt.code:
        data["code"] = receipt.code
    moved = message_transition(
        changes=[Change(message=message, data=data)],
        state=target,
        reason=f"provider reported {receipt.kind}",
        actor=f"feedback:{receipt.source}",
    )
    return bool(moved)


def _suppress(receipt: ProviderReceipt, message: Message) -> bool:
    reason = SUPPRESSES.get(receipt.kind)
    note = f"{receipt.source} reported {receipt.kind}"
    if receipt.kind == K.BOUNCED_SOFT:
        reason, note = _soft_bounce(receipt)
    if reason is None:
        return False
    return suppression_add(
        channel=message.channel,
        address=message.to_address,
        reason=reason,
        actor=f"feedback:{receipt.source}",
        note=(note + (f" ({receipt.code})" if receipt.code else ""))[:255],
        source=f"provider:{receipt.source}",
    )


def _soft_bounce(receipt: ProviderReceipt) -> tuple[str | None, str]:
    """A soft bounce suppresses the address once SOFT_BOUNCE_LIMIT of them (this one
    included) arrived within SOFT_BOUNCE_WINDOW_DAYS."""
    window = Now() - timedelta(days=settings.SOFT_BOUNCE_WINDOW_DAYS)
    count = (
        ProviderReceipt.objects.filter(
            address_hash=receipt.address_hash, kind=K.BOUNCED_SOFT, received_at__gte=window
        )
        .exclude(pk=receipt.pk)
        .count()
        + 1
    )
    if count < settings.SOFT_BOUNCE_LIMIT:
        return None, ""
    days = settings.SOFT_BOUNCE_WINDOW_DAYS
    return Suppression.Reason.BOUNCE, f"{count} soft bounces within {days} days"


# Inbound SMS keywords (Twilio's standard opt-out and opt-in words), the body trimmed and
# compared case-insensitively.
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "UNSTOP"})


def sms_keyword_receive(*, number: str, body: str, source: str) -> str:
    """An inbound SMS: a STOP word opts the number out (suppression `opt_out`), a START word
    lifts that opt-out (never a bounce suppression). Returns "opted_out", "opted_in" or
    "ignored"; repeating either changes nothing."""
    word = body.strip().upper()
    actor = f"feedback:{source}"
    if word in STOP_WORDS:
        suppression_add(
            channel="sms",
            address=number,
            reason=Suppression.Reason.OPT_OUT,
            actor=actor,
            note=f"inbound {word}",
            source="inbound-sms",
        )
        return "opted_out"
    if word in START_WORDS:
        rows = Suppression.objects.filter(
            channel="sms",
            address=address_key(channel="sms", address=number),
            reason=Suppression.Reason.OPT_OUT,
        )
        for row in rows:  # every category the number opted out of
            suppression_remove(suppression=row, actor=actor, reason=f"inbound {word}")
        return "opted_in"
    return "ignored"
