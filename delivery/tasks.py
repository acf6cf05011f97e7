"""django-q2 entry points of the delivery pipeline.

django-q2 only runs these; every state lives in our tables, so a lost task (the Redis broker
drops a SIGKILLed worker's task) or a duplicated one costs latency, never a message:
`pump` is woken per event batch by the outbox, and `tick` re-finds everything that becomes
due with time (retries, gap waits, held messages after a pause, rate-limited messages,
expired leases) because a django-q2 schedule runs at most once a minute."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid

from django.conf import settings
from django.utils.module_loading import import_string

from audit.services import audit_seal
from delivery.claims import Work, work_probe
from delivery.dispatcher import dispatch_due
from delivery.dlq import messages_purge_dead
from delivery.gates import messages_expire_due
from delivery.leases import worker_lease_release, worker_lease_take
from delivery.outbox import EXPAND_BATCH_SIZE, outbox_expand
from events.handoff import outbox_consumer_active, outbox_wake_consumed

log = logging.getLogger(__name__)

# Below Q_CLUSTER's timeout (120 s), which kills a task that runs longer.
PUMP_BUDGET_SECONDS = 50.0
# The ticker is scheduled every minute and loops for most of it; the next run waits for the
# lease and takes over when this one ends.
TICK_SECONDS = 58.0
TICK_IDLE_SLEEP = 0.25
# While a consumer run has the outbox, a pass only expires and seals (and runs the hooks):
# none of it needs a quarter-second's precision. With the gather window of 1 s, this took
# 0.10 ms per event off the workers and the database at 250 events/s (bench/NOTES.md).
TICK_BESIDE_CONSUMER_SLEEP = 1.0
TICK_PASS_BUDGET = 10.0
TICKER_LEASE = "delivery-ticker"
# Outbox batches (of EXPAND_BATCH_SIZE events) a pass expands before it dispatches. Under sustained
# intake the outbox is never found empty: expanding until it is would starve the dispatcher
# (messages pile up pending) and could outlast the task's timeout.
EXPAND_BATCHES_PER_PASS = 2
# Lineage rows a ticker pass seals into the audit chain (see audit_seal), as one seal: even a
# pass a second (TICK_BESIDE_CONSUMER_SLEEP) keeps up with ~650 events/s of lineage, in steps
# of ~30 ms instead of one burst a minute (figures: bench/NOTES.md; beyond that, the periodic
# audit-seal task takes the rest).
SEAL_PER_PASS = 2000


def pump(reason: str = "") -> dict[str, int]:
    """The outbox consumer (settings.OUTBOX_CONSUMER): turn new events into messages, then
    dispatch whatever is due — and keep at it while work keeps coming.

    One run serves a whole burst in large batches instead of one django-q2 task per event
    (per-task overhead and tiny batches were most of the delivery cost under load). While it
    runs, the wake marker stays set, so the intake enqueues nothing more; after a pass that
    finds nothing it clears the marker and makes one more pass, which sees every event
    committed before the clear; any event committed after it enqueues a fresh wake-up.
    Each pass expands at most EXPAND_BATCHES_PER_PASS batches, so expansion and dispatch take
    turns however fast events keep arriving; a pass cut short counts as one that found work.
    Between passes that found a trickle it waits settings.OUTBOX_GATHER_SECONDS (see there).

    `reason` says who queued the run (django-q2 shows it with the task); the run does the
    same whatever it is."""
    end = time.monotonic() + PUMP_BUDGET_SECONDS
    events = messages = 0
    cleared = False
    while time.monotonic() < end:
        work = work_probe()
        consumed = _expand_some() if work.outbox else 0
        report = dispatch_due(
            budget_seconds=max(0.1, end - time.monotonic()), work=_after_expansion(work, consumed)
        )
        events += consumed
        messages += report.claimed
        if consumed or report.claimed:
            cleared = False
            if consumed < EXPAND_BATCHES_PER_PASS * EXPAND_BATCH_SIZE:  # no backlog
                time.sleep(settings.OUTBOX_GATHER_SECONDS)
        elif cleared:
            break
        else:
            outbox_wake_consumed()
            cleared = True
    if not cleared:
        # Budget spent with work still coming: let the next event wake a successor (the
        # ticker and the sweeper cover a quiet outbox).
        outbox_wake_consumed()
    return {"events": events, "messages": messages}


def tick(seconds: float = TICK_SECONDS) -> int:
    """Periodic task: one ticker at a time (a lease), a pass every TICK_IDLE_SLEEP seconds
    while idle, every TICK_BESIDE_CONSUMER_SLEEP while a consumer run has the outbox, and back
    to back while there is work; returns the number of passes.

    While a consumer run is queued or running (`outbox_consumer_active`), a pass only expires
    what is past due and seals: the consumer dispatches everything due, retries and gap waits
    included, and a ticker doing the same beside it would double the claim queries under
    load for nothing. When the consumer stops (or its marker expires after a crash), the
    ticker's next pass takes over."""
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    end = time.monotonic() + seconds
    passes = 0
    hooks = [import_string(path) for path in settings.TICKER_HOOKS]
    try:
        while (remaining := end - time.monotonic()) > 0:
            wait = TICK_IDLE_SLEEP
            if worker_lease_take(name=TICKER_LEASE, holder=holder, seconds=TICK_PASS_BUDGET + 10):
                passes += 1
                wait = tick_pass(budget_seconds=min(remaining, TICK_PASS_BUDGET))
                for hook in hooks:
                    hook()
            if wait:
                time.sleep(max(0.0, min(wait, end - time.monotonic())))
    finally:
        worker_lease_release(name=TICKER_LEASE, holder=holder)
    return passes


def tick_pass(*, budget_seconds: float) -> float:
    """Expire what is past due, seal new lineage rows, expand any event whose wake-up was
    lost, dispatch what is due (the last two only while no consumer run is on it). Returns
    the seconds to wait before the next pass: 0 when it found work that the next pass should
    follow at once, TICK_BESIDE_CONSUMER_SLEEP when a consumer run has the outbox, else
    TICK_IDLE_SLEEP.

    Each step runs only when the pass's work_probe() says it has something to take (one
    statement instead of a few per step: an idle pass is most passes)."""
    work = work_probe()
    expired = messages_expire_due() if work.expiring else 0
    audit_seal(batch=SEAL_PER_PASS, limit=SEAL_PER_PASS)
    if outbox_consumer_active():
        return 0.0 if expired else TICK_BESIDE_CONSUMER_SLEEP
    events = _expand_some() if work.outbox else 0
    report = dispatch_due(budget_seconds=budget_seconds, work=_after_expansion(work, events))
    return 0.0 if expired or events or report.claimed or report.recovered else TICK_IDLE_SLEEP


def _after_expansion(work: Work, consumed: int) -> Work | None:
    """The probe read before an expansion, for the dispatch after it; None (probe again)
    once the expansion inserted messages: the channels of those it left waiting are due."""
    return None if consumed else work


def _expand_some() -> int:
    """Expand up to EXPAND_BATCHES_PER_PASS outbox batches; returns the events consumed."""
    consumed = 0
    for _ in range(EXPAND_BATCHES_PER_PASS):
        batch = outbox_expand(limit=EXPAND_BATCH_SIZE)
        if not batch:
            break
        consumed += batch
    return consumed


def purge_dead() -> int:
    """Periodic task: delete dead messages kept longer than DLQ_RETENTION_HOURS."""
    purged = messages_purge_dead()
    if purged:
        log.info("purged dead messages past retention", extra={"count": purged})
    return purged
