"""A process coalesces its outbox wake-ups: commits only note one as owed, its flusher wakes.

Most tests here set a window no test outlasts, so the flusher thread never flushes on its own
and `outbox_wake_flush` performs the owed wake when the test says; the last ones let the
thread do it (and a forked child's own thread)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connections
from django.db.backends.signals import connection_created

from events import handoff
from events.models import Event, OutboxState
from tests.events.conftest import queued_funcs


def wait_for(predicate: Callable[[], Any], *, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.01)
    return value


@pytest.fixture
def held(settings: Any) -> Iterator[None]:
    """Coalescing on, with a window the flusher thread never reaches during a test."""
    settings.OUTBOX_WAKE_COALESCE_SECONDS = 3600
    yield
    handoff.outbox_wake_stop()


@pytest.fixture
def prompt(settings: Any) -> Iterator[None]:
    """Coalescing on, with a short window: the flusher thread wakes by itself."""
    settings.OUTBOX_WAKE_COALESCE_SECONDS = 0.01
    yield
    handoff.outbox_wake_stop()


@pytest.fixture
def shared(settings: Any) -> None:
    # The marker lives in the shared cache; on the SQLite run the local-memory cache stands
    # in for it within this one process.
    settings.CACHE_IS_SHARED = True


def flusher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "outbox-wake"]


def test_it_wakes_once_for_many_commits_and_not_on_the_request(
    alice, make_event, broker, held, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        for key in ("a", "b", "c"):
            assert alice.post_event(make_event(key=key)).status_code == 202
    assert queued_funcs(broker) == []  # the commits enqueued nothing ...
    assert cache.get(handoff.WAKE_KEY) is None  # ... and set no marker (on a shared cache)

    assert handoff.outbox_wake_flush() is True
    # One wake for the three, with or without a shared cache.
    assert queued_funcs(broker) == ["delivery.tasks.pump"]
    assert handoff.outbox_wake_flush() is False  # nothing owed: no second SET NX or enqueue


def test_it_wakes_again_for_a_commit_after_a_flush(
    alice, make_event, broker, held, shared, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        alice.post_event(make_event(key="a"))
    assert handoff.outbox_wake_flush() is True
    assert queued_funcs(broker) == ["delivery.tasks.pump"]
    assert cache.get(handoff.WAKE_KEY) == 1

    # The queued run has not started: a later flush finds its marker and enqueues nothing.
    with django_capture_on_commit_callbacks(execute=True):
        alice.post_event(make_event(key="b"))
    assert handoff.outbox_wake_flush() is True
    assert queued_funcs(broker) == []

    handoff.outbox_wake_consumed()  # the run starts: newer events need a new wake-up
    with django_capture_on_commit_callbacks(execute=True):
        alice.post_event(make_event(key="c"))
    assert queued_funcs(broker) == []
    assert handoff.outbox_wake_flush() is True
    assert queued_funcs(broker) == ["delivery.tasks.pump"]


def test_it_enqueues_when_the_cache_is_down(
    alice, make_event, broker, held, shared, settings, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert alice.post_event(make_event()).status_code == 202
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    settings.CACHES = {
        "default": {
            "BACKEND": "comcenter.lib.cache.PooledRedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port}/0",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    assert handoff.outbox_wake_flush() is True
    assert queued_funcs(broker) == ["delivery.tasks.pump"]


def test_it_forgets_the_marker_when_the_enqueue_fails(
    alice, make_event, broker, held, shared, monkeypatch, django_capture_on_commit_callbacks
):
    def unreachable(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(handoff, "async_task", unreachable)
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post_event(make_event(key="a"))
    assert response.status_code == 202
    assert handoff.outbox_wake_flush() is True
    assert cache.get(handoff.WAKE_KEY) is None  # the next event tries again at once
    event = Event.objects.get(uid=response.json()["id"])
    assert event.outbox_state == OutboxState.PENDING  # for the sweeper

    monkeypatch.undo()
    with django_capture_on_commit_callbacks(execute=True):
        alice.post_event(make_event(key="b"))
    assert handoff.outbox_wake_flush() is True
    assert queued_funcs(broker) == ["delivery.tasks.pump"]


def test_stopping_ends_the_thread_and_performs_the_owed_wake(db, broker, held, shared):
    handoff.outbox_wake()
    assert len(flusher_threads()) == 1

    handoff.outbox_wake_stop()

    assert flusher_threads() == []
    assert cache.get(handoff.WAKE_KEY) == 1
    assert queued_funcs(broker) == ["delivery.tasks.pump"]
    assert handoff.outbox_wake_flush() is False  # the flusher is gone ...
    handoff.outbox_wake()  # ... and the next commit starts a new one
    assert len(flusher_threads()) == 1
    assert handoff.outbox_wake_flush() is True


def test_the_inline_setting_wakes_on_the_committing_thread(
    alice, make_event, broker, settings, django_capture_on_commit_callbacks
):
    settings.OUTBOX_WAKE_COALESCE_SECONDS = 0
    with django_capture_on_commit_callbacks(execute=True):
        alice.post_event(make_event())
    assert queued_funcs(broker) == ["delivery.tasks.pump"]
    assert flusher_threads() == []


@pytest.mark.django_db(transaction=True)
def test_the_flusher_thread_wakes_by_itself_and_keeps_no_connection(broker, prompt):
    # With the ORM broker (the embedded default) the thread's enqueue opens a connection of
    # its own: it must be closed once the wake is done. With Redis it opens none.
    opened: list[Any] = []

    def note(sender: Any, connection: Any, **kwargs: Any) -> None:
        if threading.current_thread().name == "outbox-wake":
            opened.append(connection)

    connection_created.connect(note)
    try:
        handoff.outbox_wake()
        assert wait_for(lambda: queued_funcs(broker)) == ["delivery.tasks.pump"]
        wait_for(lambda: all(c.connection is None for c in opened))
    finally:
        connection_created.disconnect(note)


@pytest.mark.django_db(transaction=True)
def test_a_forked_child_wakes_through_a_flusher_of_its_own(broker, held, settings):
    handoff.outbox_wake()  # the parent's flusher owes a wake it will not perform on its own
    (parent_thread,) = flusher_threads()
    done_read, done_write = os.pipe()
    # As a prefork server's master holds no connection when it forks: a SQLite database open
    # across a fork is not safe to write from the child (SQLite's documented pitfall).
    connections.close_all()

    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child, which leaves by os._exit
        status = 1
        try:
            os.close(done_write)
            # The parent's thread does not exist here: a child that reused its flusher would
            # note the wake and never perform it.
            settings.OUTBOX_WAKE_COALESCE_SECONDS = 0.01
            handoff.outbox_wake()
            os.read(done_read, 1)  # the parent has seen the child's wake
            status = 0
        finally:
            os._exit(status)

    os.close(done_read)
    try:
        assert wait_for(lambda: queued_funcs(broker)) == ["delivery.tasks.pump"]
    finally:
        os.write(done_write, b"x")
        os.close(done_write)
        _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0

    assert flusher_threads() == [parent_thread]  # still the parent's, still owing its wake
    handoff.outbox_wake_consumed()  # the child's run starts
    assert handoff.outbox_wake_flush() is True
    assert queued_funcs(broker) == ["delivery.tasks.pump"]
