"""The canary's recent ack latencies are shared by every process: samples recorded by two
other processes are all seen by a third (Redis when configured, else per-process files)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from comcenter.lib.latency import ack_latency_p95_ms, ack_latency_recent, backend

ROOT = Path(__file__).resolve().parents[2]

RECORD = """
import sys, django
django.setup()
from comcenter.lib.latency import ack_latency_record
start, count = int(sys.argv[1]), int(sys.argv[2])
for ms in range(start, start + count):
    ack_latency_record(ms / 1000)
"""


def _record_in_child(start: int, count: int, env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-c", RECORD, str(start), str(count)],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=60,
    )


@pytest.fixture
def shared_store(settings, tmp_path: Path) -> dict[str, str]:
    """The environment of a child process that records into the store this test reads."""
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "comcenter.settings"
    env["SECRET_KEY"] = secrets.token_urlsafe(50)
    if not django_settings.REDIS_URL:
        settings.PROMETHEUS_MULTIPROC_DIR = str(tmp_path)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    return env


def test_it_merges_samples_from_two_processes(shared_store: dict[str, str]) -> None:
    assert backend() in {"redis", "files"}
    _record_in_child(1, 20, shared_store)  # 1..20 ms
    _record_in_child(101, 20, shared_store)  # 101..120 ms
    recent = ack_latency_recent()
    assert sorted(round(ms) for ms in recent) == [*range(1, 21), *range(101, 121)]
    # Nearest rank: the 38th of 40 sorted samples.
    assert round(ack_latency_p95_ms()) == 118


def test_it_keeps_only_the_newest_window(settings, shared_store: dict[str, str]) -> None:
    settings.CANARY_P95_WINDOW = 30
    shared_store["CANARY_P95_WINDOW"] = "30"
    _record_in_child(1, 40, shared_store)
    _record_in_child(1001, 10, shared_store)
    recent = ack_latency_recent()
    assert len(recent) == 30
    assert set(range(1001, 1011)) <= {round(ms) for ms in recent}


def test_a_process_pushes_its_samples_in_batches(monkeypatch) -> None:
    """One Redis round trip per FLUSH_SECONDS per process, not one per acknowledgement; a
    flush (a read, the process's exit) pushes the rest, in the order they were recorded."""
    from comcenter.lib import latency

    pushed: list[list[float]] = []
    monkeypatch.setattr(latency._RedisBuffer, "_push", staticmethod(lambda _, b: pushed.append(b)))
    clock = [1000.0]
    monkeypatch.setattr(latency.time, "monotonic", lambda: clock[0])
    buffer = latency._RedisBuffer()

    for ms in range(1, 51):
        buffer.record("redis://unused", float(ms))
    assert pushed == [[1.0]]  # the first sample goes at once, the next 49 wait

    clock[0] += latency.FLUSH_SECONDS
    buffer.record("redis://unused", 51.0)
    assert pushed[1] == [float(ms) for ms in range(2, 52)]

    buffer.record("redis://unused", 52.0)
    buffer.flush()
    assert pushed[2:] == [[52.0]]
    buffer.flush()  # nothing left: no empty push
    assert len(pushed) == 3
