"""The outbox hand-off: waking the consumer after commit, and the sweeper behind it.

The `Event` row with `outbox_state=pending` is the outbox entry, written in the intake
transaction; what happens here is only a wake-up. A lost wake-up (broker down, process killed
between commit and enqueue) costs latency, never an event: the sweeper re-finds pending rows."""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta
from functools import cache

from django.conf import settings
from django.core.cache import cache as shared_cache
from django.db.models.functions import Now
from django_q.brokers import Broker, get_broker
from django_q.tasks import async_task

from events.models import Event, OutboxState

log = logging.getLogger(__name__)

# While this key exists a wake-up is queued and its consumer has not started yet, so a newer
# event will be seen by it: the consumer deletes the key *before* it reads the outbox.
WAKE_KEY = "outbox:wake-queued"
_WAKE_KEY_TTL = 30


@cache
def _broker() -> Broker:
    # One broker per process: opening a Redis connection per enqueue halves throughput.
    return get_broker()


def outbox_wake(*, reason: str = "intake") -> None:
    """Queue one run of the outbox consumer unless one is already queued.

    Coalescing needs a cache every process shares (Redis); with the local-memory cache of
    the embedded default each call enqueues, which is cheap at that scale."""
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
        outbox_wake(reason="sweep")
    return stale
