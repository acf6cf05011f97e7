"""The outbox consumer serves a burst in one run and hands the wake-up back when it stops."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.cache import cache

from delivery import tasks
from delivery.models import Message
from events import handoff
from events.models import Event, OutboxState
from tests.delivery.conftest import run_pump


@pytest.fixture
def shared_cache(settings):
    # The coalescing marker lives in the shared cache; the local-memory cache of the embedded
    # default stands in for it within this one process.
    settings.CACHE_IS_SHARED = True


def test_it_consumes_everything_and_clears_the_wake_marker(
    email_only, accept, shared_cache, pending_expansion
):
    first = accept()
    second = accept()
    cache.set(handoff.WAKE_KEY, 1)  # the intake queued this run

    report = run_pump()

    assert report == {"events": 2, "messages": 2}
    assert set(Event.objects.values_list("outbox_state", flat=True)) == {OutboxState.DONE}
    assert Message.objects.filter(event__in=[first, second], state="dry_run").count() == 2
    assert cache.get(handoff.WAKE_KEY) is None  # the next event wakes a new run


def test_it_sees_an_event_committed_while_it_was_running(
    email_only, accept, shared_cache, monkeypatch
):
    """An event committed after a pass found nothing, but before the marker was cleared, is
    still consumed: the run makes one more pass after clearing the marker."""
    accept()
    cache.set(handoff.WAKE_KEY, 1)
    late: list[Event] = []
    real_clear = tasks.outbox_wake_consumed

    def clear_after_a_late_commit() -> None:
        if not late:
            late.append(accept())  # committed while the marker is still set: no wake-up
        real_clear()

    monkeypatch.setattr(tasks, "outbox_wake_consumed", clear_after_a_late_commit)
    report = run_pump()

    assert report["events"] == 2
    late[0].refresh_from_db()
    assert late[0].outbox_state == OutboxState.DONE


def test_it_dispatches_while_events_keep_arriving(
    email_only, accept, shared_cache, monkeypatch, pending_expansion
):
    """Under sustained intake the outbox is never found empty; each pass still dispatches
    after a bounded share of expansion instead of waiting for the intake to pause."""
    accept()
    arrivals = 3 * tasks.EXPAND_BATCHES_PER_PASS
    dispatched_at_each_batch: list[int] = []
    real_expand = tasks.outbox_expand

    def expand_while_another_event_arrives(**kwargs: int) -> int:
        consumed = real_expand(**kwargs)
        if len(dispatched_at_each_batch) < arrivals:
            dispatched_at_each_batch.append(Message.objects.filter(state="dry_run").count())
            accept()  # committed before the next expansion batch looks
        return consumed

    monkeypatch.setattr(tasks, "outbox_expand", expand_while_another_event_arrives)
    report = run_pump()

    # Every batch found one event; after EXPAND_BATCHES_PER_PASS of them the pass dispatched
    # what they made before it expanded more.
    bound = tasks.EXPAND_BATCHES_PER_PASS
    assert dispatched_at_each_batch[:bound] == [0] * bound
    assert dispatched_at_each_batch[bound] == bound
    assert report == {"events": 1 + arrivals, "messages": 1 + arrivals}
    assert Message.objects.filter(state="dry_run").count() == 1 + arrivals
    assert cache.get(handoff.WAKE_KEY) is None


def test_a_ticker_pass_expands_a_bounded_share_then_dispatches(email_only, accept, monkeypatch):
    events = [accept() for _ in range(tasks.EXPAND_BATCHES_PER_PASS + 1)]
    real_expand = tasks.outbox_expand
    # One event a batch, so the outbox outlasts the pass's share.
    monkeypatch.setattr(tasks, "outbox_expand", lambda **_: real_expand(limit=1))

    assert tasks.tick_pass(budget_seconds=5) == 0

    made = Message.objects.filter(event__in=events)
    assert made.count() == tasks.EXPAND_BATCHES_PER_PASS
    assert set(made.values_list("state", flat=True)) == {"dry_run"}
    last = Event.objects.get(pk=events[-1].pk)
    assert last.outbox_state == OutboxState.PENDING


def test_the_ticker_leaves_the_outbox_to_a_running_consumer(email_only, accept, shared_cache):
    """While the wake marker says a consumer run is queued or running, a ticker pass does not
    expand or dispatch beside it and asks for the longer wait before the next; once the marker
    is gone, the next pass does the work."""
    event = accept()
    cache.set(handoff.WAKE_KEY, 1)

    assert tasks.tick_pass(budget_seconds=5) == tasks.TICK_BESIDE_CONSUMER_SLEEP
    assert Event.objects.get(pk=event.pk).outbox_state == OutboxState.PENDING

    cache.delete(handoff.WAKE_KEY)
    assert tasks.tick_pass(budget_seconds=5) == 0
    assert Message.objects.get(event=event).state == "dry_run"


def test_beside_a_consumer_run_the_ticker_passes_once_a_second(db, shared_cache, monkeypatch):
    """The ticker's loop waits what its pass asks: TICK_BESIDE_CONSUMER_SLEEP while a consumer
    run has the outbox, TICK_IDLE_SLEEP once it has not and nothing is left to do."""
    clock = [0.0]
    naps: list[float] = []

    def nap(seconds: float) -> None:
        naps.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(tasks.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(tasks.time, "sleep", nap)
    cache.set(handoff.WAKE_KEY, 1)

    assert tasks.tick(seconds=3 * tasks.TICK_BESIDE_CONSUMER_SLEEP) == 3
    assert naps == [tasks.TICK_BESIDE_CONSUMER_SLEEP] * 3

    naps.clear()
    cache.delete(handoff.WAKE_KEY)
    assert tasks.tick(seconds=2 * tasks.TICK_IDLE_SLEEP) == 2
    assert naps == [tasks.TICK_IDLE_SLEEP] * 2


def test_it_gathers_a_trickle_into_batches_but_not_a_backlog(
    email_only, accept, shared_cache, monkeypatch
):
    """After a pass that found a few events the consumer waits OUTBOX_GATHER_SECONDS so the
    next pass takes what arrived meanwhile in one batch; after a full pass (a backlog) it
    goes on at once."""
    naps: list[float] = []
    monkeypatch.setattr(tasks.time, "sleep", naps.append)
    accept()
    cache.set(handoff.WAKE_KEY, 1)
    run_pump()
    assert naps == [settings.OUTBOX_GATHER_SECONDS]  # one working pass, then the empty ones

    naps.clear()
    monkeypatch.setattr(tasks, "EXPAND_BATCH_SIZE", 1)
    monkeypatch.setattr(tasks, "EXPAND_BATCHES_PER_PASS", 1)
    accept()
    accept()
    cache.set(handoff.WAKE_KEY, 1)
    run_pump()
    # Pass 1 is full (a backlog): no wait; pass 2 takes the last event: a full pass too.
    assert naps == []


def test_every_ticker_pass_seals_a_share_of_the_lineage(
    email_only, accept, shared_cache, monkeypatch
):
    """The ticker seals new lineage rows on every pass, a bounded share at a time (also while
    a consumer run has the outbox), so the chain grows evenly instead of in a minute's burst."""
    from audit.services import audit_unsealed_count

    monkeypatch.setattr(tasks, "SEAL_PER_PASS", 2)
    accept()
    accept()
    cache.set(handoff.WAKE_KEY, 1)
    unsealed = audit_unsealed_count()
    assert unsealed >= 2

    tasks.tick_pass(budget_seconds=5)

    assert audit_unsealed_count() == unsealed - 2
