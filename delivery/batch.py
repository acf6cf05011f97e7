"""One batch: the gates, the render and the send of each message, and the recording of each
outcome as a typed `Outcome`.

Dry run. While DISABLE_SEND is on and dispatch is not paused, nothing leaves the machine, so
a batch needs no lease: in one transaction it selects the heads as a claim does (locking the
messages as well as their lanes, since it sets no busy_until), applies the same gates and
rendering as a claimed batch, and moves each message from its waiting state straight to its
outcome (`dry_run`, or what a gate decided), with one lineage row (carrying the gap note when
out of order) and done_sequence advanced. The locks, held until that commit, keep every other
worker off those lanes. Sends turned on mid-batch leave the remaining messages in line for the
next batch, which is claimed.

Dry run at expansion. The expansion transaction (delivery/outbox.py) decides at once each new
message that would be claimable immediately, with an `ExpansionBatch`: the same gates and
rendering, the outcome applied to the unsaved message, which is then inserted in that state
(no `pending` row first, no second transaction).

Every write of a result leaves `dispatching` along an edge of the transition table that is
fenced on the lease token and frees the lane (delivery/transitions.py): it applies only under
the lease_token this worker claimed, and frees the lane in the same statement. A send
starts only while the remaining lease exceeds three provider deadlines, so a
live worker is never overtaken by a second claimer of its lane. A worker that dies leaves
`dispatching` rows whose liveness record (delivery/liveness.py) runs out within seconds, or
at the latest their lease; `messages_recover_expired_leases` puts them back in line
(`retrying`, due now) and frees their lanes. A send starts only while this worker's liveness
holds (renewed before the send), so a worker paused past it sends nothing more. Each send's
result is committed before the next send starts, so a worker killed mid-batch leaves at most
one message sent but unrecorded: at most one duplicate per crash, and the email Message-ID and
the gateway's Idempotency-Key (both from the message uid) let the receiver drop it. Times are
the database's (Now()), never the host's."""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.functions import Now

from comcenter.lib.context import request_id_bound
from comcenter.lib.db import DbClock
from comcenter.lib.metrics import DELIVERIES, E2E_LATENCY
from delivery.circuit import circuit_close, circuit_trip, provider_down
from delivery.gates import message_gate
from delivery.hooks import hooks_for
from delivery.liveness import Liveness
from delivery.models import Attempt, AttemptOutcome, Message, MessageState, Suppression
from delivery.providers.base import OutboundMessage, Provider, ProviderError, ProviderSession
from delivery.ratelimit import ratelimit_refund
from delivery.retries import retry_decision
from delivery.suppressions import address_key, suppressed_addresses, suppression_add
from delivery.transitions import NOW, TRANSITIONS, Change, Effect, message_transition
from flags.services import flag_is_on
from templates.rendering import Rendered, RenderError, render_version

log = logging.getLogger(__name__)


# A send starts only while the lease has this many provider deadlines left: an SMTP send is
# several socket operations, each bounded by the deadline.
LEASE_MARGIN_CALLS = 3
MAX_ERROR_LENGTH = 500


def dry_run_now() -> bool:
    """Whether a batch taken now is a dry-run batch: sends off and dispatch not paused. The
    dispatcher chooses its batch by it, and the expansion decides new messages at once by it."""
    return flag_is_on("DISABLE_SEND") and not flag_is_on("DISPATCH_PAUSED")


def call_timeout() -> float:
    """The provider deadline per network operation: well inside the lease (PITFALLS: a call
    that outlives its lease breaks per-key order even if its result write is fenced)."""
    return min(10.0, settings.DISPATCH_LEASE_SECONDS / (2 * LEASE_MARGIN_CALLS))


@dataclass
class BatchResult:
    claimed: int = 0
    states: Counter[str] = field(default_factory=Counter)


@dataclass
class Outcome:
    """What a batch decided for one message: its next state and the columns that change with
    it. None leaves a column as it is."""

    state: str
    reason: str
    # The provider attempt (a send or a failed send), with the attempt count it makes.
    attempt: Attempt | None = None
    attempts: int | None = None
    rendered: Rendered | None = None
    template_version_id: int | None = None
    last_error: str | None = None
    provider_message_id: str | None = None
    # A retry's backoff: next_attempt_at = now + this, and the lineage row says it.
    retry_in: float | None = None
    # The message left (or, in dry run, would have left) now.
    dispatched: bool = False
    # Back in line (pending): when it is due again; None is now.
    due_at: datetime | None = None


class Batch:
    """Sends one claimed batch. Outcomes that left nothing outside (gates, dry-run, render
    errors, releases) are written together at the end; each real send's result is committed
    before the next send starts. Every write leaves `dispatching` along an edge of the
    transition table, fenced on the claim's token (which also frees the lane)."""

    def __init__(
        self,
        provider: Provider,
        messages: list[Message],
        tokens: int,
        claimed_at: float,
        *,
        probe: bool = False,
        liveness: Liveness | None = None,
        clock: DbClock | None = None,
    ) -> None:
        self.provider = provider
        self.liveness = liveness
        # The batch probes a provider found down (delivery/circuit.py): its success closes
        # the circuit. `down_until` is set once a send of this batch found it down.
        self.probe = probe
        self.down_until: datetime | None = None
        self.messages = messages
        self.tokens = tokens
        # A caller that has read the database clock already passes it (one read a batch).
        self.clock = clock or DbClock()
        # Measured from before the claim statement, so never later than the real lease end.
        self.lease_end = claimed_at + settings.DISPATCH_LEASE_SECONDS
        self.timeout = call_timeout()
        self.session: ProviderSession | None = None
        self.deferred: dict[tuple[str, str], list[Change]] = {}
        self.result = BatchResult(claimed=len(messages))
        channel = messages[0].channel
        self.suppressed: dict[str, frozenset[str]] = suppressed_addresses(
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
            self._defer(message, Outcome(MessageState.PENDING, "waiting for the rate limit"))
            return
        if self.lease_end - time.monotonic() < LEASE_MARGIN_CALLS * self.timeout:
            self._defer(message, Outcome(MessageState.PENDING, "lease budget spent; back in line"))
            return
        if self.liveness is not None and not self.liveness.alive():
            # Paused or cut off past its liveness: its claims may be another worker's now.
            lost = Outcome(MessageState.PENDING, "worker liveness lost; back in line")
            self._defer(message, lost)
            return
        if self.down_until is not None:
            held = Outcome(
                MessageState.PENDING,
                "provider down; back in line without an attempt",
                due_at=self.down_until,
            )
            self._defer(message, held)
            return
        self.tokens = max(0, self.tokens - 1)
        self._send(message, rendered, version_id)

    def _decide(self, message: Message) -> tuple[Rendered, int] | None:
        """Apply the gates, render, and record dry run while DISABLE_SEND is on. Defers the
        outcome and returns None when one was decided; else returns what to send (the
        rendered content and its template version)."""
        gate = message_gate(message=message, now=self.clock.now(), suppressed=self.suppressed)
        if gate is not None:
            self._defer(message, Outcome(*gate))
            return None
        template = message.template
        # message_gate() returned None, so both exist.
        assert template is not None
        assert template.current_version is not None
        version = template.current_version
        version.template = template  # render_version reads it; avoid a query per message
        try:
            rendered = render_version(version, _context(message))
        except RenderError as exc:
            outcome = Outcome(
                MessageState.DEAD,
                "render failed",
                last_error=f"render failed: {exc}"[:MAX_ERROR_LENGTH],
                template_version_id=version.pk,
            )
            self._defer(message, outcome)
            return None
        if flag_is_on("DISABLE_SEND"):
            outcome = Outcome(
                MessageState.DRY_RUN,
                "DISABLE_SEND is on: rendered, not sent",
                rendered=rendered,
                template_version_id=version.pk,
            )
            self._defer(message, outcome)
            return None
        return rendered, version.pk

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
            if not exc.permanent:
                # The session may be broken (a 421 closes the channel); a fresh one is cheap.
                self._drop_session()
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
        if self.probe:
            self.probe = False
            circuit_close(provider=self.provider.name, channel=message.channel)
        attempt = self._attempt(message, number, started, AttemptOutcome.SENT, sent.response_code)
        attempt.provider_message_id = sent.provider_message_id[:255]
        outcome = Outcome(
            MessageState.SENT,
            "provider accepted",
            attempt=attempt,
            attempts=number,
            provider_message_id=sent.provider_message_id[:255],
            dispatched=True,
            rendered=rendered,
            template_version_id=version_id,
            last_error="",
        )
        self._write_now(message, outcome)

    def _failed(
        self,
        message: Message,
        error: ProviderError,
        number: int,
        started: datetime,
        rendered: Rendered,
        version_id: int,
    ) -> None:
        if provider_down(error):
            self.down_until = circuit_trip(provider=self.provider.name)
        if error.suppress:
            self._suppress(message, error)
        text = (error.message or type(error).__name__)[:MAX_ERROR_LENGTH]
        outcome = AttemptOutcome.PERMANENT if error.permanent else AttemptOutcome.TRANSIENT
        state, reason, delay = retry_decision(error=error, number=number)
        log.warning(
            "delivery failed",
            extra={
                **_log_extra(message),
                "state": state,
                "response_code": error.response_code,
                "attempt": number,
            },
        )
        result = Outcome(
            state,
            reason,
            attempt=self._attempt(message, number, started, outcome, error.response_code, text),
            attempts=number,
            last_error=text,
            rendered=rendered,
            template_version_id=version_id,
            retry_in=delay,
        )
        self._write_now(message, result)

    def _suppress(self, message: Message, error: ProviderError) -> None:
        """The failure says the address is gone (SMTP 5.1.x, an SMS opt-out): suppress it,
        here and for the rest of this batch, so no later message to it is tried."""
        suppression_add(
            channel=message.channel,
            address=message.to_address,
            reason=error.suppress,
            actor=f"provider:{self.provider.name}",
            note=f"{self.provider.name} refused the address at send ({error.response_code})",
            source=f"provider:{self.provider.name}",
        )
        self.suppressed[address_key(channel=message.channel, address=message.to_address)] = (
            frozenset({Suppression.Category.ALL})
        )

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

    def _change(self, message: Message, outcome: Outcome) -> Change:
        values: dict[str, Any] = {"provider": self.provider.name}
        data: dict[str, Any] = {}
        if outcome.attempts is not None:
            values["attempts"] = outcome.attempts
        if outcome.rendered is not None:
            values["rendered_hash"] = outcome.rendered.content_hash
        if outcome.template_version_id is not None:
            values["template_version_id"] = outcome.template_version_id
        if outcome.provider_message_id is not None:
            values["provider_message_id"] = outcome.provider_message_id
        last_error = outcome.last_error
        if last_error is None and outcome.state in (MessageState.DEAD, MessageState.BLOCKED):
            last_error = outcome.reason[:MAX_ERROR_LENGTH]
        if last_error is not None:
            values["last_error"] = last_error
        if outcome.dispatched or outcome.state == MessageState.DRY_RUN:
            values["dispatched_at"] = NOW
        if outcome.retry_in is not None:
            values["next_attempt_at"] = Now() + timedelta(seconds=outcome.retry_in)
            data["retry_in_seconds"] = round(outcome.retry_in, 3)
        elif outcome.state == MessageState.PENDING:
            # Back in line without an attempt: due again at once (or when the limit allows,
            # or when a provider found down is probed again).
            values["next_attempt_at"] = outcome.due_at or NOW
        latency = (self.clock.now() - message.received_at).total_seconds()
        return Change(
            message=message, values=values, data=data, attempt=outcome.attempt, latency=latency
        )

    def _write_now(self, message: Message, outcome: Outcome) -> None:
        moved = message_transition(
            changes=[self._change(message, outcome)],
            state=outcome.state,
            reason=outcome.reason,
            durable=False,
        )
        if moved:
            self.result.states[outcome.state] += 1
        else:
            log.warning("result not recorded: the claim was superseded", extra=_log_extra(message))

    def _defer(self, message: Message, outcome: Outcome) -> None:
        key = (outcome.state, outcome.reason)
        self.deferred.setdefault(key, []).append(self._change(message, outcome))

    def _flush(self) -> None:
        for (state, reason), changes in self.deferred.items():
            moved = message_transition(changes=changes, state=state, reason=reason, durable=False)
            self.result.states[state] += len(moved)
        self.deferred = {}


class DryRunBatch(Batch):
    """A batch selected while DISABLE_SEND is on: nothing will leave the machine, so there is
    no claim, lease or fencing token. Runs inside the transaction that locked the batch's
    lanes; each message goes from its waiting state straight to its outcome, decided by the
    same code as a claimed batch's, and its one lineage row carries the gap note a claim
    row would have carried."""

    def __init__(
        self,
        provider: Provider,
        messages: list[Message],
        notes: dict[int, dict[str, Any]],
        clock: DbClock | None = None,
    ) -> None:
        super().__init__(provider, messages, tokens=0, claimed_at=time.monotonic(), clock=clock)
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

    def _change(self, message: Message, outcome: Outcome) -> Change:
        change = super()._change(message, outcome)
        change.data = {**self.notes.get(message.pk, {}), **change.data}
        return change


@dataclass
class Decision:
    """The outcome an ExpansionBatch applied to an unsaved message: its state and reason,
    the lineage facts of the decision, and whether it raises its lane's done_sequence."""

    state: str
    reason: str
    data: dict[str, Any]
    raises_done: bool


class ExpansionBatch(DryRunBatch):
    """Dry-run decisions for messages not inserted yet (the expansion transaction, which
    has locked their lanes): `decide` runs the gates and the render of a dry-run batch and
    writes the outcome's columns into the message, which the caller inserts in that state
    with one lineage row. The outcome must be an edge of the transition table from the
    message's state (pending); a message left undecided is inserted pending."""

    def __init__(self, provider: Provider, messages: list[Message], clock: DbClock) -> None:
        super().__init__(provider, messages, {}, clock)
        self._last: tuple[Outcome, Change] | None = None

    def decide(self, message: Message) -> Decision | None:
        self._last = None
        with request_id_bound(message.event.request_id):
            self._decide(message)
        if self._last is None:
            return None  # DISABLE_SEND was turned off: it stays in line, to be claimed
        outcome, change = self._last
        edge = TRANSITIONS.get((message.state, outcome.state))
        now = self.clock.now()
        values = {k: now if isinstance(v, Now) else v for k, v in change.values.items()}
        if edge is None or any(hasattr(v, "resolve_expression") for v in values.values()):
            return None
        for name, value in values.items():
            setattr(message, name, value)
        message.state = outcome.state
        self.result.states[outcome.state] += 1
        transaction.on_commit(functools.partial(_observe, message, change.latency))
        return Decision(
            outcome.state, outcome.reason, change.data, Effect.RAISES_DONE in edge.effects
        )

    def _defer(self, message: Message, outcome: Outcome) -> None:
        self._last = (outcome, self._change(message, outcome))


def _observe(message: Message, latency: float | None) -> None:
    """The metrics of an outcome decided at expansion, as message_transition counts them."""
    DELIVERIES.labels(message.channel, message.provider or "none", message.state).inc()
    if latency is not None and message.state == MessageState.DRY_RUN:
        E2E_LATENCY.labels(message.channel).observe(max(0.0, latency))


def _context(message: Message) -> dict[str, Any]:
    event = message.event
    data = event.data if isinstance(event.data, dict) else {}
    return {
        **data,
        **hooks_for(event.event_type).context(message=message),
        "recipient": {"id": message.recipient_id, "locale": message.locale},
        "event_type": event.event_type,
    }


def _log_extra(message: Message) -> dict[str, Any]:
    return {
        "message_uid": str(message.uid),
        "channel": message.channel,
        "request_id": message.event.request_id,
    }
