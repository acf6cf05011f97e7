"""The dispatch loop: claim a batch per channel and send it, until nothing is due or the time
budget is spent. How a claim keeps per-key order: delivery/claims.py; how a batch records its
outcomes: delivery/batch.py."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction

from delivery.batch import Batch, BatchResult, DryRunBatch, dry_run_now
from delivery.circuit import circuit_state
from delivery.claims import (
    Work,
    claim,
    gap_note,
    has_due,
    hydrate,
    lock_heads,
    messages_recover_expired_leases,
    work_probe,
)
from delivery.liveness import Liveness
from delivery.models import WAITING_STATES
from delivery.providers.base import Provider
from delivery.providers.registry import provider_for
from delivery.ratelimit import ratelimit_acquire, ratelimit_refund
from flags.services import flag_is_on


def dispatch_batch(
    *, channel: str, limit: int | None = None, liveness: Liveness | None = None
) -> BatchResult:
    """Claim and process one batch of `channel`. Reserves rate-limit tokens first when sends
    are live, so a batch never claims more than it may send. The claims name `liveness`
    (delivery/liveness.py) and the batch stops sending once it is lost."""
    limit = limit or settings.DISPATCH_BATCH_SIZE
    provider = provider_for(channel)
    if dry_run_now():
        return _dry_run_batch(channel=channel, limit=limit, provider=provider)
    paused = flag_is_on("DISPATCH_PAUSED")
    probe = False
    if not paused:
        circuit = circuit_state(provider=provider.name)
        if circuit.open:
            return BatchResult()  # the provider is down: its messages wait, no attempt spent
        if circuit.probing:
            limit, probe = 1, True
    tokens = 0
    if not paused and flag_is_on("RATE_LIMIT_ENABLED"):
        if not has_due(channel=channel, paused=paused):
            return BatchResult()
        grant = ratelimit_acquire(provider=provider.name, want=limit)
        if not grant.granted:
            return BatchResult()
        tokens = limit = grant.granted
    claimed_at = time.monotonic()
    messages = claim(channel=channel, limit=limit, paused=paused, liveness=liveness)
    if tokens > len(messages):
        ratelimit_refund(provider=provider.name, count=tokens - len(messages))
        tokens = len(messages)
    if not messages:
        return BatchResult()
    return Batch(provider, messages, tokens, claimed_at, probe=probe, liveness=liveness).run()


def _dry_run_batch(*, channel: str, limit: int, provider: Provider) -> BatchResult:
    """Select, decide and record one dry-run batch of `channel` in one transaction: one
    state change (and lineage row) per message instead of a claim and a result.

    Race-free like a claim: the lanes and messages stay locked FOR UPDATE until the outcomes
    commit, so another worker skips them; one whose snapshot predates this commit and locks
    them after it sees the message's new state in PostgreSQL's re-check (see lock_heads).
    Besides, message_transition moves a message only from the state it was loaded in."""
    with transaction.atomic():
        found = lock_heads(channel=channel, states=WAITING_STATES, limit=limit, lock_messages=True)
        messages = hydrate(list(found))
        if not messages:
            return BatchResult()
        # `gap` is the annotation of claims._heads, unknown to the model's type.
        notes = {m.pk: gap_note(m) for m in messages if found[m.pk].gap}  # type: ignore[attr-defined]
        return DryRunBatch(provider, messages, notes).run()


@dataclass
class DispatchReport:
    claimed: int = 0
    states: Counter[str] = field(default_factory=Counter)
    recovered: int = 0


def dispatch_due(
    *, budget_seconds: float, limit: int | None = None, work: Work | None = None
) -> DispatchReport:
    """Dispatch batches of every channel until nothing is due or the time budget is spent,
    under one liveness record (created by the first claim, deleted at the end).

    `work` is the caller's work_probe() (read now if not given): the recovery runs only
    when a claim or a liveness record ran out, and batches are taken only on the channels
    with a waiting message due (every channel once messages were recovered), and again only
    on those whose last batch took something, so an idle pass is one statement instead of
    a recovery query, a purge and a transaction per channel. A message that becomes due on
    a channel left out is taken by the next pass."""
    work = work or work_probe()
    report = DispatchReport()
    if work.recoverable:
        report.recovered = messages_recover_expired_leases()
    channels = [c for c in settings.DELIVERY_PROVIDERS if report.recovered or c in work.due]
    if not channels:
        return report
    deadline = time.monotonic() + budget_seconds
    with Liveness() as liveness:
        while channels and time.monotonic() < deadline and not liveness.lost:
            busy = []
            for channel in channels:
                result = dispatch_batch(channel=channel, limit=limit, liveness=liveness)
                report.claimed += result.claimed
                report.states.update(result.states)
                if result.claimed:
                    busy.append(channel)
            channels = busy
    return report
