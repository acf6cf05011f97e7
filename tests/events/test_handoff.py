"""The outbox hand-off: a wake-up after commit, and the sweeper behind it.

Tests run with OUTBOX_WAKE_COALESCE_SECONDS = 0, so each commit wakes on its own thread; a
process's own coalescing is in test_wake_coalescing.py."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from events import handoff
from events.models import Event, OutboxState
from tests.events.conftest import queued_funcs


def test_it_wakes_the_consumer_after_commit(
    alice, make_event, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert alice.post_event(make_event()).status_code == 202
    assert queued_funcs(broker) == ["delivery.tasks.pump"]


def test_it_enqueues_nothing_when_the_transaction_rolls_back(
    alice, make_event, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        try:
            with transaction.atomic():
                transaction.on_commit(handoff.outbox_wake)
                raise RuntimeError("rollback")
        except RuntimeError:
            pass
    assert callbacks == []
    assert queued_funcs(broker) == []


def test_it_still_answers_202_when_the_broker_is_down(
    alice, make_event, broker, monkeypatch, django_capture_on_commit_callbacks
):
    def broken(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(handoff, "async_task", broken)
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post_event(make_event())
    assert response.status_code == 202
    event = Event.objects.get(uid=response.json()["id"])
    assert event.outbox_state == OutboxState.PENDING


def test_the_sweeper_finds_an_event_that_was_committed_but_never_enqueued(
    alice, make_event, broker, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(handoff, "async_task", lambda *a, **k: None)  # the wake-up is lost
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post_event(make_event())
    monkeypatch.undo()
    event = Event.objects.get(uid=response.json()["id"])

    assert handoff.outbox_sweep() == 0  # too young: its wake-up may still be on the way
    assert queued_funcs(broker) == []

    Event.objects.filter(pk=event.pk).update(received_at=timezone.now() - timedelta(minutes=5))
    assert handoff.outbox_sweep() == 1
    assert queued_funcs(broker) == ["delivery.tasks.pump"]

    from delivery.tasks import pump

    pump("test")
    event.refresh_from_db()
    assert event.outbox_state == OutboxState.DONE
    assert event.handed_off_at is not None
    assert handoff.outbox_sweep() == 0


def test_the_sweeper_is_registered_as_a_periodic_task(db):
    from django_q.models import Schedule

    from comcenter.schedules import sync_schedules

    sync_schedules()
    schedule = Schedule.objects.get(name="outbox-sweep")
    assert schedule.func == "events.handoff.outbox_sweep"
    assert schedule.schedule_type == Schedule.MINUTES


def test_it_coalesces_wakeups_until_the_consumer_starts(
    alice, make_event, broker, settings, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        alice.post_event(make_event(key="a"))
        alice.post_event(make_event(key="b"))
    # A shared cache (Redis) lets every process see that a wake-up is already queued; with
    # the embedded local-memory cache each event enqueues its own.
    expected = 1 if settings.CACHE_IS_SHARED else 2
    assert queued_funcs(broker) == ["delivery.tasks.pump"] * expected

    handoff.outbox_wake_consumed()  # the consumer starts: newer events need a new wake-up
    with django_capture_on_commit_callbacks(execute=True):
        alice.post_event(make_event(key="c"))
    assert queued_funcs(broker) == ["delivery.tasks.pump"]
