"""The guard runs at least every GUARD_INTERVAL_SECONDS from the delivery ticker's hook, and on
one node at a time: a run within the interval is skipped by every other caller (the lease)."""

from __future__ import annotations

import socket
import time

import pytest
from django.conf import settings

from comcenter.schedules import sync_schedules
from guard import tasks
from guard.services import guard_run_if_due

pytestmark = pytest.mark.usefixtures("store")


def test_it_runs_once_per_interval_whoever_calls(settings) -> None:
    settings.GUARD_INTERVAL_SECONDS = 5
    started = time.monotonic()
    assert guard_run_if_due() is not None
    assert guard_run_if_due() is None  # another node (or the periodic task) comes too soon
    while guard_run_if_due() is None:  # until the lease (0.9 of an interval) runs out
        time.sleep(0.1)
    assert time.monotonic() - started >= 4.5


def test_it_is_a_ticker_hook_and_a_periodic_task(db) -> None:
    assert "guard.tasks.guard_due" in settings.TICKER_HOOKS
    assert "guard" in sync_schedules()


def test_it_never_lets_a_failure_stop_the_ticker(settings, monkeypatch, caplog) -> None:
    with socket.socket() as sock:  # a port nobody listens on: the store is unreachable
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    configured = settings.REDIS_URL
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    monkeypatch.setattr(tasks, "_next_look", 0.0)
    try:
        tasks.guard_due()  # does not raise
        assert "guard run failed" in caplog.text
        tasks.guard_due()  # and waits an interval before trying again
        assert caplog.text.count("guard run failed") == 1
    finally:
        settings.REDIS_URL = configured  # the store fixture empties the real store after
