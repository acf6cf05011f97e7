"""Each trigger trips from what two real web processes (gunicorn, two sync workers) count
together in the shared store: 5xx from a view that raises, JWT failures from bad tokens over
HTTP, queue depth with dispatch held (no worker runs), slow acks from an injected delay. The
incident opens once, the flag is set with source `guard`, and the paused intake answers 503
and stores nothing until an operator resolves the incident."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command

from audit.models import AuditRecord
from events.models import Event
from flags.models import FlagChange, FlagSource
from flags.services import flag_set
from guard.models import Incident
from guard.services import guard_check, incident_resolve
from tests.conftest import Actor
from tests.support.web import database_url, free_port, wait_live

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("live_store")]


@pytest.fixture(scope="module")
def web(django_db_setup: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """gunicorn with two workers on the test database (and Redis, when the suite has one)."""
    tmp = tmp_path_factory.mktemp("guard-web")
    port = free_port()
    metrics = tmp / "metrics"
    metrics.mkdir()
    env = dict(os.environ)
    env.update(
        # The test process's key: the tokens it issues must verify in the server.
        SECRET_KEY=settings.SECRET_KEY,
        DJANGO_SETTINGS_MODULE="tests.guard.web_settings",
        DATABASE_URL=database_url(),
        PROMETHEUS_MULTIPROC_DIR=str(metrics),
        GUNICORN_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="2",
        PYTHONUNBUFFERED="1",
        GUARD_FLUSH_SECONDS="0",
        GUARD_BUCKET_SECONDS="1",
        FLAG_CACHE_SECONDS="0.2",
        REDIS_URL=settings.REDIS_URL,
    )
    log_path = tmp / "stdout.log"
    with log_path.open("wb") as log, (tmp / "stderr.log").open("wb") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py",
             "comcenter.wsgi:application"],
            cwd=ROOT, env=env, stdout=log, stderr=errors,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            wait_live(base, process, timeout=60)
            yield {"base": base, "log": log_path}
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def _call(url: str, *, body: dict[str, Any] | None = None, **headers: str) -> int:
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _parallel(calls: list[Callable[[], int]]) -> list[int]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda call: call(), calls))


def _served_by(log: Path) -> set[int]:
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return {e["pid"] for e in entries if e.get("logger") == "gunicorn.access"}


def _event(key: str) -> dict[str, Any]:
    return {
        "event_type": "deadline_soon",
        "idempotency_key": key,
        "recipient": {"id": "s-1", "email": "a@example.org", "phone": "+12025550123"},
        "data": {"scholarship": "STEM Futures", "deadline": "2026-12-01"},
    }


def _post_event(web: dict[str, Any], token: str, key: str, **headers: str) -> int:
    return _call(
        f"{web['base']}/api/v1/events", body=_event(key), Authorization=f"Bearer {token}", **headers
    )


def _wait_for(check: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def _trip_once(trigger: str) -> Incident:
    result = guard_check()
    assert result["opened"], result["readings"]
    assert guard_check()["opened"] == []
    incident = Incident.objects.get()
    assert incident.trigger == trigger
    change = FlagChange.objects.filter(name=incident.flag).first()
    assert (change.source, change.new_value, change.actor) == (FlagSource.GUARD, True, "guard")
    return incident


@pytest.fixture
def alice_live(live_store: None) -> Actor:
    call_command("load_demo", verbosity=0)
    return Actor("alice", ["events:write", "events:read"])


def _live_sending() -> None:
    flag_set(name="DISABLE_SEND", value=False, actor="o", reason="live", source=FlagSource.ADMIN)


def test_it_trips_on_5xx_counted_by_two_processes(web: dict[str, Any], alice_live: Actor) -> None:
    _live_sending()
    base, token = web["base"], alice_live.token
    missing = f"{base}/api/v1/events/{uuid.uuid4()}"
    calls = [lambda: _call(f"{base}/test/fail")] * 30
    calls += [lambda: _call(missing, Authorization=f"Bearer {token}")] * 30
    statuses = _parallel(calls)
    assert sorted(set(statuses)) == [404, 500]
    incident = _trip_once("errors_5xx")
    assert incident.samples == 60  # every answer of both workers
    assert incident.measured == pytest.approx(0.5)
    assert incident.flag == "DISABLE_SEND"
    assert len(_served_by(web["log"])) == 2


def test_it_pauses_intake_on_jwt_failures_and_stores_nothing(
    web: dict[str, Any], alice_live: Actor
) -> None:
    token = alice_live.token
    good = [lambda i=i: _post_event(web, token, f"jwt-{i}") for i in range(40)]
    bad = [lambda: _post_event(web, "eyJhbGciOiJIUzI1NiJ9.e30.forged", "forged")] * 10
    statuses = _parallel(good + bad)
    assert statuses.count(202) == 40
    assert statuses.count(401) == 10
    incident = _trip_once("jwt_failures")
    assert incident.samples == 50
    assert incident.measured == pytest.approx(0.2)
    assert incident.flag == "INTAKE_PAUSED"
    # Posts that reach a process before it reads the flag are still accepted (the flag is
    # cached up to FLAG_CACHE_SECONDS): wait until both answer 503, then nothing may be stored.
    _wait_for(lambda: _post_event(web, token, f"paused-{uuid.uuid4()}") == 503)
    stored = Event.objects.count()
    assert (
        _parallel([lambda i=i: _post_event(web, token, f"late-{i}") for i in range(10)])
        == [503] * 10
    )
    assert Event.objects.count() == stored
    incident_resolve(incident_id=incident.pk, actor="olivia", reason="IdP keys fixed")
    _wait_for(lambda: _post_event(web, token, f"again-{uuid.uuid4()}") == 202)
    assert AuditRecord.objects.filter(kind="guard.incident_resolved", actor="olivia").exists()
    lowered = FlagChange.objects.filter(name="INTAKE_PAUSED").first()
    assert (lowered.new_value, lowered.actor) == (False, "olivia")


def test_it_trips_on_queue_depth_with_dispatch_held(
    web: dict[str, Any], alice_live: Actor, settings: Any
) -> None:
    from delivery.outbox import outbox_expand

    settings.GUARD_INTERVAL_SECONDS = 0.5
    settings.GUARD_QUEUE_WINDOW_SECONDS = 2
    settings.GUARD_QUEUE_BASELINE_SECONDS = 2
    settings.GUARD_QUEUE_FLOOR = 3
    _live_sending()  # in dry run the expansion would decide the messages at once
    statuses = _parallel(
        [lambda i=i: _post_event(web, alice_live.token, f"q-{i}") for i in range(10)]
    )
    assert statuses == [202] * 10
    while outbox_expand():
        pass  # messages pending, and no worker to dispatch them
    opened: list[int] = []

    def tripped() -> bool:
        opened.extend(guard_check()["opened"])
        time.sleep(settings.GUARD_INTERVAL_SECONDS)
        return bool(opened)

    _wait_for(tripped)
    incident = Incident.objects.get()
    assert (incident.trigger, incident.flag, incident.threshold) == (
        "queue_depth",
        "DISPATCH_PAUSED",
        6,
    )
    assert incident.measured == 20  # an email and an SMS per event
    assert guard_check()["opened"] == []


def test_it_trips_on_slow_acks(web: dict[str, Any], alice_live: Actor) -> None:
    _live_sending()
    token = alice_live.token
    slow = [
        lambda i=i: _post_event(web, token, f"slow-{i}", **{"X-Test-Delay-Ms": "350"})
        for i in range(20)
    ]
    assert _parallel(slow) == [202] * 20
    incident = _trip_once("ack_p95")
    assert incident.samples == 20
    assert incident.measured >= 400  # the bound of the bucket the P95 falls in (350 ms + work)
    assert incident.flag == "DISABLE_SEND"
