"""The outbox hand-off: waking the consumer after commit, and the sweeper behind it.

The `Event` row with `outbox_state=pending` is the outbox entry, written in the intake
transaction; what happens here is only a wake-up. A lost wake-up (broker down, process killed
between commit and enqueue) costs latency, never an event: the sweeper re-finds pending rows.

Wake-ups are coalesced twice. Across processes, by the wake marker in the shared cache
(WAKE_KEY): one queued consumer run serves every process's events. Within a process, by its
flusher: a commit only notes that a wake is owed (`outbox_wake`, no I/O on the request
thread), and a daemon thread performs one wake (`outbox_wake_now`: the marker's SET NX, then
the enqueue) for every commit noted since its last one, at most once per
OUTBOX_WAKE_COALESCE_SECONDS. At load that is one Redis round trip per window and process
instead of one per event (bench/NOTES.md).

Why no event is missed: a commit notes its wake after it committed (on_commit) and either sets
the owed flag or finds it set; the flusher clears the flag only after that, and every clear is
followed by `outbox_wake_now`. So every event committed before a clear is committed before
that flush's SET NX, and from there the marker's argument holds as it did for a wake made on
the request thread (see WAKE_KEY): the flush either queues a run, or finds the marker of a run
that has not started and will read the outbox after deleting it. The flush comes at most one
window after the commit (plus the wait for the interpreter lock). A process that dies with a
wake owed loses only latency: the event is committed and pending, and the delivery ticker's
next pass (no consumer run active) or the sweeper (after OUTBOX_SWEEP_AFTER_SECONDS) takes it.

The flusher touches only the cache and the broker. With the ORM broker (embedded default) the
enqueue is a database write: the thread closes its connection after each flush rather than
holding one. The embedded default coalesces too: there, without a shared cache, each wake is
an enqueue (an ORM insert taking SQLite's one write lock, then one more consumer run), so one
per window and process instead of one per event saves both. OUTBOX_WAKE_COALESCE_SECONDS = 0
wakes inline on the committing thread, as before (the default under tests, which then see the
enqueue right after the commit; `outbox_wake_flush` flushes on demand)."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
from datetime import timedelta
from functools import cache

from django.conf import settings
from django.core.cache import cache as shared_cache
from django.db import connections
from django.db.models.functions import Now
from django_q.brokers import Broker, get_broker
from django_q.tasks import async_task

from events.models import Event, OutboxState

log = logging.getLogger(__name__)

# While this key exists a wake-up is queued and its consumer has not started yet, so a newer
# event will be seen by it: the consumer deletes the key *before* it reads the outbox.
WAKE_KEY = "outbox:wake-queued"
_WAKE_KEY_TTL = 30
# How long stopping waits for a flush in progress (a broker call that may take a few seconds
# to fail when the broker is down).
_STOP_JOIN_SECONDS = 5.0


@cache
def _broker() -> Broker:
    # One broker per process: opening a Redis connection per enqueue halves throughput.
    return get_broker()


def outbox_wake() -> None:
    """After an event committed to the outbox: make sure a consumer run will see it.

    Notes the wake as owed for this process's flusher (started on first use in each
    process, so forked web workers get their own); with OUTBOX_WAKE_COALESCE_SECONDS = 0,
    wakes at once instead."""
    if settings.OUTBOX_WAKE_COALESCE_SECONDS <= 0:
        outbox_wake_now()
        return
    owed = (_flusher or _flusher_start()).owed
    if not owed.is_set():  # the flag's own lock only when it changes, once per flush
        owed.set()


def outbox_wake_now(*, reason: str = "intake") -> None:
    """Queue one run of the outbox consumer unless one is already queued.

    Coalescing needs a cache every process shares (Redis); with the local-memory cache of
    the embedded default each call enqueues."""
    if settings.CACHE_IS_SHARED:
        try:
            if not shared_cache.add(WAKE_KEY, 1, timeout=_WAKE_KEY_TTL):
                return
        except Exception:  # cache down: enqueue anyway, the broker may still be up
            log.warning(
                "outbox wake: cache unavailable, enqueueing without coalescing",
                extra={"cause": "cache_unavailable"},
            )
    try:
        async_task(
            settings.OUTBOX_CONSUMER, reason, broker=_broker(), q_options={"group": "outbox"}
        )
    except Exception:
        # The event is committed; the sweeper will find it. Forget the marker so the next
        # event tries again instead of waiting for the marker to expire.
        log.warning(
            "outbox wake: enqueue failed; the sweeper will hand the event off",
            extra={"cause": "broker_unavailable"},
        )
        if settings.CACHE_IS_SHARED:
            with contextlib.suppress(Exception):
                shared_cache.delete(WAKE_KEY)


def outbox_wake_flush() -> bool:
    """Perform the wake this process owes now, on the calling thread; False if none was owed.

    What the flusher thread does once per window; tests call it to flush when they choose."""
    flusher = _flusher
    return flusher is not None and flusher.flush()


def outbox_wake_stop() -> None:
    """End this process's flusher thread, then perform the wake it owed (at exit; tests).

    A later `outbox_wake` starts a new flusher."""
    global _flusher
    with _flusher_lock:
        flusher, _flusher = _flusher, None
    if flusher is not None:
        flusher.stop()


class _Flusher:
    """One process's owed-wake flag and the daemon thread that turns it into wakes."""

    def __init__(self) -> None:
        self.owed = threading.Event()
        self._stopping = threading.Event()
        self._flushing = threading.Lock()  # one flush at a time: the thread's or a caller's
        # Counted from the start, so a process's first wake also waits up to one window.
        self._last_flush = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="outbox-wake", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def flush(self) -> bool:
        with self._flushing:
            if not self.owed.is_set():
                return False
            # Cleared before the SET NX: a commit noted from here on is owed the next flush.
            self.owed.clear()
            self._last_flush = time.monotonic()
            outbox_wake_now()
            return True

    def stop(self) -> None:
        owed = self.owed.is_set()
        self._stopping.set()
        self.owed.set()  # wakes the thread from its wait; it sees `_stopping` and ends
        self._thread.join(_STOP_JOIN_SECONDS)
        if owed:
            outbox_wake_now()

    def _run(self) -> None:
        while True:
            self.owed.wait()
            window = self._last_flush + settings.OUTBOX_WAKE_COALESCE_SECONDS - time.monotonic()
            if self._stopping.wait(max(0.0, window)):
                return
            try:
                try:
                    self.flush()
                finally:
                    connections.close_all()  # only this thread's: the ORM broker's enqueue
            except Exception:
                # Never let the thread die: this process's events would wait for the sweeper.
                log.warning(
                    "outbox wake: flush failed; the sweeper will hand the events off",
                    extra={"cause": "flush_failed"},
                )


_flusher: _Flusher | None = None
_flusher_lock = threading.Lock()


def _flusher_start() -> _Flusher:
    global _flusher
    with _flusher_lock:
        if _flusher is None:
            flusher = _Flusher()
            flusher.start()
            _flusher = flusher
        return _flusher


def _flusher_forget_after_fork() -> None:
    """In a forked child (gunicorn, granian, django-q2 workers): the parent's thread does not
    exist here, what it owed is the parent's to wake, and its lock may have been held by
    another thread at the fork. The child's first commit starts the child's own flusher."""
    global _flusher, _flusher_lock
    _flusher, _flusher_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_flusher_forget_after_fork)
# A graceful exit wakes for what the last commits owed instead of leaving it to the sweeper.
atexit.register(outbox_wake_stop)


def outbox_wake_consumed() -> None:
    """Called by the consumer first thing, before it reads the outbox (see WAKE_KEY)."""
    if settings.CACHE_IS_SHARED:
        try:
            shared_cache.delete(WAKE_KEY)
        except Exception:
            log.warning(
                "outbox wake: cache unavailable while clearing the wake marker",
                extra={"cause": "cache_unavailable"},
            )


def outbox_consumer_active() -> bool:
    """True while a consumer run is queued or running (the wake marker is set): the delivery
    ticker then leaves the outbox and the dispatch to it. False when unknown (no shared
    cache, or it is down), so the ticker does the work itself."""
    if not settings.CACHE_IS_SHARED:
        return False
    try:
        return shared_cache.get(WAKE_KEY) is not None
    except Exception:
        return False


def outbox_stale_count() -> int:
    """Pending outbox rows older than the sweep threshold: what a crash or lost wake left."""
    threshold = Now() - timedelta(seconds=settings.OUTBOX_SWEEP_AFTER_SECONDS)
    return Event.objects.filter(outbox_state=OutboxState.PENDING, received_at__lt=threshold).count()


def outbox_sweep() -> int:
    """Periodic task: wake the consumer if any committed event was never handed off.

    Returns how many stale rows it found (0 means nothing to do)."""
    stale = outbox_stale_count()
    if stale:
        log.warning("outbox sweep: found unhanded events", extra={"count": stale})
        if settings.CACHE_IS_SHARED:
            outbox_wake_consumed()  # a stale marker must not suppress this wake-up
        outbox_wake_now(reason="sweep")
    return stale
