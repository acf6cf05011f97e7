"""The outbox consumer serves a burst in one run and hands the wake-up back when it stops."""

from __future__ import annotations

import pytest
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


def test_it_consumes_everything_and_clears_the_wake_marker(email_only, accept, shared_cache):
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
