"""The dispatcher: claims due messages a batch at a time and sends each batch through one
provider session, under the gates, a lease, per-key ordering and the shared rate limit.

Per-key ordering. Every message belongs to a lane (one per caller and ordering key) and has a
lane position (lane_order, event id, id), lane_order being the sequence or 0 (receipt order)
without one. A message is claimable when all of these hold:
- it is waiting (pending, retrying; held too unless DISPATCH_PAUSED) and next_attempt_at has
  come (retry backoff, rate-limit waits);
- it is the lane's head: no active message of the lane (waiting or dispatching) comes before
  it;
- its lane is free: `lane.busy_until` (the lease of the lane's message in flight) is unset or
  past;
- it is in order or has waited long enough: no sequence; or sequence <= lane.done_sequence + 1
  (done_sequence is the highest sequence of the key that reached a final state, a dead
  message included, so a dead message releases its key; or whose event produced no message
  in the lane); or its gap wait is over (`gap_until`, ORDERING_GAP_WAIT after the message
  entered its lane — not after the event's receipt, so that a backlog in the outbox cannot
  use up the wait before the predecessor had a chance to arrive — and no event received
  within ORDERING_GAP_WAIT of it is still in the outbox, so that a predecessor received in
  time but not yet expanded still goes first), in which case the claim's lineage row records
  the gap.

Claim protocol, one transaction, the same ORM code on PostgreSQL and SQLite:
1. SELECT the claimable heads of a channel in due order, LIMIT batch, FOR UPDATE OF the lane
   row SKIP LOCKED. A lane another worker is claiming right now is skipped. A lane another
   worker claimed and committed after this statement's snapshot is caught by PostgreSQL's
   re-check of the WHERE clause on the newest version of the row it locks: `busy_until` is
   set there, so the row drops out.
2. UPDATE those lanes: busy_until = now() + DISPATCH_LEASE_SECONDS.
3. UPDATE the messages to `dispatching` (only if still in the state read in step 1) with
   lease_until = now() + lease and lease_token + 1, and write their lineage rows. A lane
   whose message changed meanwhile is freed again.
On SQLite there is no SKIP LOCKED (Django drops the clause); the IMMEDIATE transaction holds
the database write lock from its first statement, so the steps run with no other writer.

Dry run. While DISABLE_SEND is on and dispatch is not paused, nothing leaves the machine, so a
batch needs no lease: in one transaction it selects the heads as step 1 does (locking the
messages as well as their lanes, since it sets no busy_until), applies the same gates and
rendering as a claimed batch, and moves each message from its waiting state straight to its
outcome (`dry_run`, or what a gate decided), with one lineage row (carrying the gap note when
out of order) and done_sequence advanced. The locks, held until that commit, keep every other
worker off those lanes. Sends turned on mid-batch leave the remaining messages in line for the
next batch, which is claimed.

Every write of a result leaves `dispatching` through `message_transition(fenced=True)`: it
applies only under the lease_token this worker claimed, and frees the lane in the same
statement. A send starts only while the remaining lease exceeds three provider deadlines, so a
live worker is never overtaken by a second claimer of its lane. A worker that dies leaves
`dispatching` rows whose lease runs out; `messages_recover_expired_leases` puts them back in
line (`retrying`, due now) and their lanes free themselves when busy_until passes. Each send's
result is committed before the next send starts, so a worker killed mid-batch leaves at most
one message sent but unrecorded: at most one duplicate per crash, and the email Message-ID and
the gateway's Idempotency-Key (both from the message uid) let the receiver drop it. Times are
the database's (Now()), never the host's.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import BooleanField, Case, Exists, F, Func, OuterRef, Q, QuerySet, Value, When
from django.db.models.functions import Now

from comcenter.lib.context import request_id_bound
from delivery.clock import DbClock
from delivery.hooks import hooks_for
from delivery.models import (
    ACTIVE_STATES,
    WAITING_STATES,
    Attempt,
    AttemptOutcome,
    Lane,
    Message,
    MessageState,
)
from delivery.providers.base import OutboundMessage, Provider, ProviderError, ProviderSession
from delivery.providers.registry import provider_for
from delivery.ratelimit import ratelimit_acquire, ratelimit_refund
from delivery.services import (
    Change,
    message_transition,
    messages_recover_expired_leases,
    suppressed_addresses,
)
from events.models import Event, OutboxState
from flags.services import flag_is_on
from templates.models import Category, Template
from templates.rendering import Rendered, RenderError, render_version
from templates.selectors import template_for

log = logging.getLogger(__name__)

# A send starts only while the lease has this many provider deadlines left: an SMTP send is
# several socket operations, each bounded by the deadline.
LEASE_MARGIN_CALLS = 3
MAX_ERROR_LENGTH = 500
# Full jitter may draw a delay of ~0: a provider that just failed is not asked again within
# the same second (and the consumer's next pass, 0.2 s later, does not resend at once).
RETRY_MIN_SECONDS = 1.0


def call_timeout() -> float:
    """The provider deadline per network operation: well inside the lease (PITFALLS: a call
    that outlives its lease breaks per-key order even if its result write is fenced)."""
    return min(10.0, settings.DISPATCH_LEASE_SECONDS / (2 * LEASE_MARGIN_CALLS))


def retry_delay(*, attempt: int, retry_after: float | None = None) -> float:
    """Seconds before retry number `attempt` + 1: exponential backoff with full jitter,
    uniform in [RETRY_MIN_SECONDS, min(cap, base * 2^(attempt-1))], never sooner than the
    provider's Retry-After."""
    ceiling = min(
        settings.RETRY_CAP_SECONDS, settings.RETRY_BASE_SECONDS * 2 ** max(0, attempt - 1)
    )
    delay = random.uniform(min(RETRY_MIN_SECONDS, ceiling), ceiling)
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return delay


# --- claiming --------------------------------------------------------------------------------


class _RowBefore(Func):
    """(a, b, c) < (x, y, z): a row-value comparison, which PostgreSQL and SQLite both
    evaluate and PostgreSQL plans far faster than the equivalent chain of ORs."""

    output_field = BooleanField()
    conditional = True

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        parts: list[str] = []
        params: list[Any] = []
        for expression in self.get_source_expressions():
            sql, sql_params = compiler.compile(expression)
            parts.append(sql)
            params.extend(sql_params)
        half = len(parts) // 2
        return f"({', '.join(parts[:half])}) < ({', '.join(parts[half:])})", params


def _heads(states: tuple[str, ...]) -> QuerySet[Message]:
    """Due messages in `states` at the head of a free lane (see the module docstring)."""
    earlier = Message.objects.filter(
        _RowBefore(
            F("lane_order"),
            F("event_id"),
            F("id"),
            OuterRef("lane_order"),
            OuterRef("event_id"),
            OuterRef("id"),
        ),
        lane_id=OuterRef("lane_id"),
        state__in=ACTIVE_STATES,
    )
    in_order = Q(sequence__isnull=True) | Q(sequence__lte=F("lane__done_sequence") + 1)
    lane_free = Q(lane__busy_until__isnull=True) | Q(lane__busy_until__lt=Now())
    gap_over = Q(gap_until__lte=Now())
    watermark = _outbox_watermark()
    if watermark is not None:
        # A predecessor received within this message's gap wait may still be in the outbox
        # (a backlog, an expansion transaction not yet committed): the wait is over only
        # once every event received up to then has entered its lane.
        gap_over &= Q(received_at__lt=watermark - timedelta(seconds=settings.ORDERING_GAP_WAIT))
    return (
        Message.objects.filter(lane_free, state__in=states, next_attempt_at__lte=Now())
        .filter(in_order | gap_over)
        .filter(~Exists(earlier))
        .annotate(gap=Case(When(in_order, then=Value(False)), default=Value(True)))
    )


def _outbox_watermark() -> datetime | None:
    """When the oldest event still waiting in the outbox was received (None: it is empty).
    Events held outside the outbox (auth_pending) do not count."""
    return (
        Event.objects.filter(outbox_state=OutboxState.PENDING)
        .order_by("id")
        .values_list("received_at", flat=True)
        .first()
    )


def claimable_states(*, paused: bool) -> tuple[str, ...]:
    # While paused, heads are still claimed so they can be recorded `held`; held ones stay.
    if paused:
        return (MessageState.PENDING, MessageState.RETRYING)
    return WAITING_STATES


def has_due(*, channel: str, paused: bool) -> bool:
    return _heads(claimable_states(paused=paused)).filter(channel=channel).exists()


def _lock_heads(
    *, channel: str, states: tuple[str, ...], limit: int, lock_messages: bool = False
) -> dict[int, Message]:
    """Up to `limit` claimable heads of `channel` in due order (id, lane_id and the `gap`
    annotation only), with their lanes locked until the caller's transaction ends.

    FOR UPDATE OF the lane, SKIP LOCKED: a lane another worker is claiming (or dry-running)
    is skipped; one it claimed and committed meanwhile fails the re-check of `busy_until`
    that PostgreSQL runs on the row it locks (its newest version). Either way this worker
    never takes a second message of a busy lane.

    A dry-run batch sets no `busy_until` for that re-check to see, so it locks the messages
    too (`lock_messages`): then the re-check reads the message's own newest state, and a
    head that another worker dry-ran and committed after this statement's snapshot has left
    the waiting states and drops out, instead of being hydrated and decided for nothing."""
    of = ("self", "lane") if lock_messages else ("lane",)
    return {
        m.pk: m
        for m in _heads(states)
        .filter(channel=channel)
        .select_related("lane")
        .select_for_update(skip_locked=True, of=of)
        .only("id", "lane_id", "lane__id")
        .order_by("next_attempt_at", "id")[:limit]
    }


def claim(*, channel: str, limit: int, paused: bool) -> list[Message]:
    """Claim up to `limit` due heads of `channel` (at most one per lane) for this worker."""
    states = claimable_states(paused=paused)
    lease = timedelta(seconds=settings.DISPATCH_LEASE_SECONDS)
    with transaction.atomic():
        found = _lock_heads(channel=channel, states=states, limit=limit)
        if not found:
            return []
        lanes = {m.lane_id for m in found.values()}
        Lane.objects.filter(pk__in=lanes).update(busy_until=Now() + lease)
        messages = _hydrate(list(found))
        claimed = message_transition(
            changes=[
                Change(message=m, data=_gap_note(m) if found[m.pk].gap else {}) for m in messages
            ],
            state=MessageState.DISPATCHING,
            from_states=states,
            reason="claimed",
            common={"lease_token": F("lease_token") + 1, "lease_until": Now() + lease},
            durable=False,
        )
        unclaimed = lanes - {m.lane_id for m in claimed}
        if unclaimed:
            # Their head changed state meanwhile (expired, requeued): free the lane again.
            Lane.objects.filter(pk__in=unclaimed).update(busy_until=None)
    return claimed


def _hydrate(ids: list[int]) -> list[Message]:
    """The claimed rows with what sending needs: the event (not its recipient object or
    token) and each template once per batch, with its current version."""
    messages = list(
        Message.objects.filter(pk__in=ids)
        .select_related("event")
        .defer("event__recipient", "event__pending_token", "event__payload_hash")
        .order_by("next_attempt_at", "id")
    )
    templates = Template.objects.select_related("current_version").in_bulk(
        {m.template_id for m in messages if m.template_id is not None}
    )
    for message in messages:
        if message.template_id is not None:
            message.template = templates[message.template_id]
    return messages


def _gap_note(message: Message) -> dict[str, Any]:
    return {
        "ordering_gap": {
            "missing_sequence": (message.sequence or 1) - 1,
            "waited_seconds": settings.ORDERING_GAP_WAIT,
        }
    }


# --- one batch -------------------------------------------------------------------------------


@dataclass
class BatchResult:
    claimed: int = 0
    states: Counter[str] = field(default_factory=Counter)


class _Batch:
    """Sends one claimed batch. Outcomes that left nothing outside (gates, dry-run, render
    errors, releases) are written together at the end; each real send's result is committed
    before the next send starts."""

    # Where the messages are when their outcomes are written, and whether those writes are
    # fenced on the claim's token (which also frees the lane).
    from_states: tuple[str, ...] = (MessageState.DISPATCHING,)
    fenced = True

    def __init__(
        self, provider: Provider, messages: list[Message], tokens: int, claimed_at: float
    ) -> None:
        self.provider = provider
        self.messages = messages
        self.tokens = tokens
        self.clock = DbClock()
        # Measured from before the claim statement, so never later than the real lease end.
        self.lease_end = claimed_at + settings.DISPATCH_LEASE_SECONDS
        self.timeout = call_timeout()
        self.session: ProviderSession | None = None
        self.deferred: dict[tuple[str, str], list[Change]] = {}
        self.result = BatchResult(claimed=len(messages))
        channel = messages[0].channel
        self.suppressed = suppressed_addresses(
            channel=channel, addresses=[m.to_address for m in messages]
        )

    def run(self) -> BatchResult:
        try:
            for message in self.messages:
                with request_id_bound(message.event.request_id):
                    self._one(message)
        finally:
            if self.session is not None:
                self.session.close()
            self._flush()
            if self.tokens:
                ratelimit_refund(provider=self.provider.name, count=self.tokens)
        return self.result

    # -- decisions

    def _one(self, message: Message) -> None:
        ready = self._decide(message)
        if ready is None:
            return
        rendered, version_id = ready
        if flag_is_on("RATE_LIMIT_ENABLED") and self.tokens <= 0:
            # Claimed while sends were off (no tokens reserved) and sends are on now.
            self._defer(message, MessageState.PENDING, "waiting for the rate limit")
            return
        if self.lease_end - time.monotonic() < LEASE_MARGIN_CALLS * self.timeout:
            self._defer(message, MessageState.PENDING, "lease budget spent; back in line")
            return
        self.tokens = max(0, self.tokens - 1)
        self._send(message, rendered, version_id)

    def _decide(self, message: Message) -> tuple[Rendered, int] | None:
        """Apply the gates, render, and record dry run while DISABLE_SEND is on. Defers the
        outcome and returns None when one was decided; else returns what to send (the
        rendered content and its template version)."""
        gate = self._gate(message)
        if gate is not None:
            self._defer(message, *gate)
            return None
        template = message.template
        # _gate() returned None, so both exist.
        assert template is not None
        assert template.current_version is not None
        version = template.current_version
        version.template = template  # render_version reads it; avoid a query per message
        try:
            rendered = render_version(version, _context(message))
        except RenderError as exc:
            self._defer(
                message,
                MessageState.DEAD,
                "render failed",
                last_error=f"render failed: {exc}"[:MAX_ERROR_LENGTH],
                template_version_id=version.pk,
            )
            return None
        if flag_is_on("DISABLE_SEND"):
            self._defer(
                message,
                MessageState.DRY_RUN,
                "DISABLE_SEND is on: rendered, not sent",
                rendered=rendered,
                template_version_id=version.pk,
            )
            return None
        return rendered, version.pk

    def _gate(self, message: Message) -> tuple[str, str] | None:
        """(state, reason) when a gate stops the message, read right before its send."""
        if message.expires_at is not None and message.expires_at <= self.clock.now():
            return MessageState.EXPIRED, "expires_at passed before dispatch"
        if _address_key(message) in self.suppressed:
            return MessageState.SUPPRESSED, "address is suppressed"
        template = message.template or template_for(
            key=message.template_key, locale=message.locale or None
        )
        if template is None:
            return MessageState.DEAD, f"no template {message.template_key!r}"
        message.template = template
        stop = hooks_for(message.event.event_type).gate(message=message, template=template)
        if stop is not None:
            return stop
        stop = _template_gate(template, message.channel)
        if stop is not None:
            return stop
        if flag_is_on("DISPATCH_PAUSED"):
            return MessageState.HELD, "DISPATCH_PAUSED is on"
        return None

    # -- sending

    def _send(self, message: Message, rendered: Rendered, version_id: int) -> None:
        number = message.attempts + 1
        started = self.clock.now()
        outbound = OutboundMessage(
            message_uid=str(message.uid),
            channel=message.channel,
            to=message.to_address,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            request_id=message.event.request_id,
        )
        try:
            if self.session is None:
                self.session = self.provider.open(timeout=self.timeout)
            sent = self.session.send(outbound)
        except ProviderError as exc:
            self._failed(message, exc, number, started, rendered, version_id)
            return
        except Exception as exc:  # a provider bug must not leave the batch dispatching
            log.exception("provider raised an unexpected error", extra=_log_extra(message))
            self._drop_session()
            error = ProviderError(
                f"unexpected {type(exc).__name__} from the provider", permanent=False
            )
            self._failed(message, error, number, started, rendered, version_id)
            return
        attempt = self._attempt(message, number, started, AttemptOutcome.SENT, sent.response_code)
        self._write_now(
            message,
            MessageState.SENT,
            "provider accepted",
            attempt=attempt,
            attempts=number,
            provider_message_id=sent.provider_message_id[:255],
            dispatched_at=Now(),
            rendered=rendered,
            template_version_id=version_id,
            last_error="",
        )

    def _failed(
        self,
        message: Message,
        error: ProviderError,
        number: int,
        started: datetime,
        rendered: Rendered,
        version_id: int,
    ) -> None:
        if not error.permanent:
            # The session may be broken (a 421 closes the channel); a fresh one is cheap.
            self._drop_session()
        text = (error.message or type(error).__name__)[:MAX_ERROR_LENGTH]
        outcome = AttemptOutcome.PERMANENT if error.permanent else AttemptOutcome.TRANSIENT
        attempt = self._attempt(message, number, started, outcome, error.response_code, text)
        values: dict[str, Any] = {
            "attempts": number,
            "last_error": text,
            "rendered": rendered,
            "template_version_id": version_id,
        }
        if error.permanent:
            state, reason = MessageState.DEAD, "permanent provider error"
        elif not flag_is_on("RETRIES_ENABLED"):
            state, reason = MessageState.DEAD, "RETRIES_ENABLED is off"
        elif number >= settings.RETRY_MAX_ATTEMPTS:
            state, reason = MessageState.DEAD, f"gave up after {number} attempts"
        else:
            delay = retry_delay(attempt=number, retry_after=error.retry_after)
            state, reason = MessageState.RETRYING, "transient provider error"
            values["next_attempt_at"] = Now() + timedelta(seconds=delay)
            values["data"] = {"retry_in_seconds": round(delay, 3)}
        log.warning(
            "delivery failed",
            extra={
                **_log_extra(message),
                "state": state,
                "response_code": error.response_code,
                "attempt": number,
            },
        )
        self._write_now(message, state, reason, attempt=attempt, **values)

    def _attempt(
        self,
        message: Message,
        number: int,
        started: datetime,
        outcome: str,
        code: str,
        error: str = "",
    ) -> Attempt:
        return Attempt(
            message=message,
            number=number,
            lease_token=message.lease_token,
            started_at=started,
            outcome=outcome,
            provider=self.provider.name,
            response_code=(code or "")[:50],
            error=error,
            idempotency_key=str(message.uid),
        )

    def _drop_session(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    # -- recording

    def _change(self, message: Message, values: dict[str, Any]) -> Change:
        data = values.pop("data", {})
        rendered: Rendered | None = values.pop("rendered", None)
        attempt = values.pop("attempt", None)
        if rendered is not None:
            values["rendered_hash"] = rendered.content_hash
        values.setdefault("provider", self.provider.name)
        latency = (self.clock.now() - message.received_at).total_seconds()
        return Change(message=message, values=values, data=data, attempt=attempt, latency=latency)

    def _write_now(self, message: Message, state: str, reason: str, **values: Any) -> None:
        if "lease_until" not in values:
            values["lease_until"] = None
        moved = message_transition(
            changes=[self._change(message, values)],
            state=state,
            from_states=[MessageState.DISPATCHING],
            reason=reason,
            fenced=True,
            durable=False,
        )
        if moved:
            self.result.states[state] += 1
        else:
            log.warning("result not recorded: the claim was superseded", extra=_log_extra(message))

    def _defer(self, message: Message, state: str, reason: str, **values: Any) -> None:
        values["lease_until"] = None
        if state == MessageState.DRY_RUN:
            values["dispatched_at"] = Now()
        if state == MessageState.PENDING:
            # Back in line without an attempt: due again at once (or when the limit allows).
            values["next_attempt_at"] = Now()
        if "last_error" not in values and state in (MessageState.DEAD, MessageState.BLOCKED):
            values["last_error"] = reason[:MAX_ERROR_LENGTH]
        self.deferred.setdefault((state, reason), []).append(self._change(message, values))

    def _flush(self) -> None:
        for (state, reason), changes in self.deferred.items():
            moved = message_transition(
                changes=changes,
                state=state,
                from_states=self.from_states,
                reason=reason,
                fenced=self.fenced,
                durable=False,
            )
            self.result.states[state] += len(moved)
        self.deferred = {}


class _DryRunBatch(_Batch):
    """A batch selected while DISABLE_SEND is on: nothing will leave the machine, so there is
    no claim, lease or fencing token. Runs inside the transaction that locked the batch's
    lanes; each message goes from its waiting state straight to its outcome, decided by the
    same code as a claimed batch's, and its one lineage row carries the gap note a claim
    row would have carried."""

    from_states = WAITING_STATES
    fenced = False

    def __init__(
        self, provider: Provider, messages: list[Message], notes: dict[int, dict[str, Any]]
    ) -> None:
        super().__init__(provider, messages, tokens=0, claimed_at=time.monotonic())
        self.notes = notes

    def run(self) -> BatchResult:
        for message in self.messages:
            with request_id_bound(message.event.request_id):
                # A message that _decide() would send (DISABLE_SEND was turned off since the
                # batch was selected) stays in line, untouched, for the next batch: a claimed
                # one, which sends it.
                self._decide(message)
        self._flush()
        return self.result

    def _change(self, message: Message, values: dict[str, Any]) -> Change:
        change = super()._change(message, values)
        change.data = {**self.notes.get(message.pk, {}), **change.data}
        return change


def _template_gate(template: Template, channel: str) -> tuple[str, str] | None:
    if template.channel != channel:
        return MessageState.DEAD, f"template is for {template.channel}, the route for {channel}"
    if template.current_version_id is None:
        return MessageState.DEAD, "template has no version"
    if not template.enabled:
        return MessageState.BLOCKED, "template disabled"
    if not template.whitelisted:
        return MessageState.BLOCKED, "template not whitelisted"
    if template.category == Category.PROMOTIONAL and not flag_is_on("PROMO_SENDS"):
        return MessageState.BLOCKED, "PROMO_SENDS is off"
    if template.tier >= 1 and (not flag_is_on("AUTOMATION_ENABLED") or flag_is_on("SAFE_MODE")):
        return MessageState.BLOCKED, f"tier {template.tier} needs AUTOMATION_ENABLED, not SAFE_MODE"
    return None


def _context(message: Message) -> dict[str, Any]:
    event = message.event
    data = event.data if isinstance(event.data, dict) else {}
    return {
        **data,
        **hooks_for(event.event_type).context(message=message),
        "recipient": {"id": message.recipient_id, "locale": message.locale},
        "event_type": event.event_type,
    }


def _address_key(message: Message) -> str:
    address = message.to_address.strip()
    return address.lower() if message.channel == "email" else address


def _log_extra(message: Message) -> dict[str, Any]:
    return {
        "message_uid": str(message.uid),
        "channel": message.channel,
        "request_id": message.event.request_id,
    }


# --- the loop the tasks run ------------------------------------------------------------------


def dispatch_batch(*, channel: str, limit: int | None = None) -> BatchResult:
    """Claim and process one batch of `channel`. Reserves rate-limit tokens first when sends
    are live, so a batch never claims more than it may send."""
    limit = limit or settings.DISPATCH_BATCH_SIZE
    paused = flag_is_on("DISPATCH_PAUSED")
    provider = provider_for(channel)
    if not paused and flag_is_on("DISABLE_SEND"):
        return _dry_run_batch(channel=channel, limit=limit, provider=provider)
    tokens = 0
    if not paused and flag_is_on("RATE_LIMIT_ENABLED"):
        if not has_due(channel=channel, paused=paused):
            return BatchResult()
        grant = ratelimit_acquire(provider=provider.name, want=limit)
        if not grant.granted:
            return BatchResult()
        tokens = limit = grant.granted
    claimed_at = time.monotonic()
    messages = claim(channel=channel, limit=limit, paused=paused)
    if tokens > len(messages):
        ratelimit_refund(provider=provider.name, count=tokens - len(messages))
        tokens = len(messages)
    if not messages:
        return BatchResult()
    return _Batch(provider, messages, tokens, claimed_at).run()


def _dry_run_batch(*, channel: str, limit: int, provider: Provider) -> BatchResult:
    """Select, decide and record one dry-run batch of `channel` in one transaction: one
    state change (and lineage row) per message instead of a claim and a result.

    Race-free like a claim: the lanes and messages stay locked FOR UPDATE until the outcomes
    commit, so another worker skips them; one whose snapshot predates this commit and locks
    them after it sees the message's new state in PostgreSQL's re-check (see _lock_heads).
    Besides, message_transition moves a message only from the state it was loaded in."""
    with transaction.atomic():
        found = _lock_heads(channel=channel, states=WAITING_STATES, limit=limit, lock_messages=True)
        messages = _hydrate(list(found))
        if not messages:
            return BatchResult()
        notes = {m.pk: _gap_note(m) for m in messages if found[m.pk].gap}
        return _DryRunBatch(provider, messages, notes).run()


@dataclass
class DispatchReport:
    claimed: int = 0
    states: Counter[str] = field(default_factory=Counter)
    recovered: int = 0


def dispatch_due(*, budget_seconds: float, limit: int | None = None) -> DispatchReport:
    """Dispatch batches of every channel until nothing is due or the time budget is spent."""
    report = DispatchReport(recovered=messages_recover_expired_leases())
    deadline = time.monotonic() + budget_seconds
    channels = list(settings.DELIVERY_PROVIDERS)
    while time.monotonic() < deadline:
        claimed = 0
        for channel in channels:
            result = dispatch_batch(channel=channel, limit=limit)
            claimed += result.claimed
            report.states.update(result.states)
        report.claimed += claimed
        if not claimed:
            break
    return report
