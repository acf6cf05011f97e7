"""Fixtures of the delivery tests: templates and routes like the demo's, flags switched the
way a test needs, events accepted through the intake service (not HTTP), and real worker
processes for the multi-process tests."""

from __future__ import annotations

import itertools
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from delivery import outbox
from delivery.models import Message, Route
from delivery.routes import route_ensure
from delivery.tasks import pump
from events.models import Event
from events.services import event_accept, event_type_ensure
from flags.services import flag_set, flags_forget_cache
from templates.models import Template
from templates.services import template_create
from tests.support.web import database_url

ALICE = "sa:alice"
ROOT = Path(__file__).resolve().parents[2]
_keys = itertools.count(1)


def set_flag(name: str, value: bool) -> None:
    flag_set(name=name, value=value, actor="test", reason="test setup", source="api")


def run_pump() -> dict[str, int]:
    return pump("test")


def states(event: Event) -> dict[str, str]:
    return {m.channel: m.state for m in Message.objects.filter(event=event)}


def wait_until(predicate: Callable[[], Any], *, timeout: float = 15.0, every: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy and return its value; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(every)


@pytest.fixture(autouse=True)
def _fresh_flags() -> Iterator[None]:
    # Flags are cached per process for a couple of seconds: never let one test see another's.
    flags_forget_cache()
    yield
    flags_forget_cache()


@pytest.fixture
def routes(db: Any) -> dict[str, Template]:
    """deadline_soon -> an email and an SMS template (transactional, whitelisted, enabled)."""
    event_type_ensure(name="deadline_soon")
    email = template_create(
        key="deadline_soon_email",
        channel="email",
        subject="Seq {{ seq }}: {{ scholarship }} closes on {{ deadline }}",
        body="Seq {{ seq }}: {{ scholarship }} closes on {{ deadline }}.",
        whitelisted=True,
    )
    sms = template_create(
        key="deadline_soon_sms",
        channel="sms",
        body="Seq {{ seq }}: {{ scholarship }} closes {{ deadline }}.",
        whitelisted=True,
    )
    route_ensure(event_type="deadline_soon", template_key="deadline_soon_email", channel="email")
    route_ensure(
        event_type="deadline_soon", template_key="deadline_soon_sms", channel="sms", position=1
    )
    return {"email": email, "sms": sms}


@pytest.fixture
def email_only(routes: dict[str, Template]) -> Template:
    """Only the email route stays enabled."""
    Route.objects.filter(channel="sms").update(enabled=False)
    return routes["email"]


@pytest.fixture
def sms_only(routes: dict[str, Template]) -> Template:
    """Only the SMS route stays enabled."""
    Route.objects.filter(channel="email").update(enabled=False)
    return routes["sms"]


@pytest.fixture
def pending_expansion(monkeypatch: pytest.MonkeyPatch) -> None:
    """Expansion inserts every message pending, as it does for one not claimable at once
    (or with sends on): for tests of what a dry-run batch or the ticker does with it."""
    monkeypatch.setattr(outbox, "dry_run_now", lambda: False)


@pytest.fixture
def live(db: Any) -> None:
    """Sends leave for real (to the loopback servers) and the rate limit is off."""
    set_flag("DISABLE_SEND", False)
    set_flag("RATE_LIMIT_ENABLED", False)


def make_payload(**overrides: Any) -> dict[str, Any]:
    recipient = {
        "id": "student-42",
        "email": "ada@example.org",
        "phone": "+12025550123",
        "locale": "en",
    }
    recipient.update(overrides.pop("recipient", {}))
    payload: dict[str, Any] = {
        "event_type": "deadline_soon",
        "recipient": recipient,
        "data": {"scholarship": "STEM Futures", "deadline": "2026-12-01", "seq": 0},
    }
    payload.update(overrides)
    return payload


@pytest.fixture
def accept(db: Any) -> Callable[..., Event]:
    """Accept an event through the intake service; keyword arguments override the payload
    (`recipient` is merged into the default one)."""

    def accept(key: str | None = None, caller: str = ALICE, **overrides: Any) -> Event:
        payload = make_payload(**overrides)
        if "sequence" in payload:
            payload["data"] = {**payload["data"], "seq": payload["sequence"]}
        result = event_accept(
            caller=caller,
            payload=payload,
            idempotency_key=key or f"evt-{next(_keys)}",
            request_id=f"req-{next(_keys)}",
        )
        return result.event

    return accept


# --- worker processes ----------------------------------------------------------------------


class Workers:
    """Worker processes running the outbox consumer and dispatcher against the test
    database, like django-q2 workers woken by the outbox."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, count: int = 1, **env: str) -> list[subprocess.Popen[str]]:
        base = {
            key: value
            for key, value in os.environ.items()
            # The workers read flags from the database the test writes, not from here.
            if key not in {"DISABLE_SEND", "DISPATCH_PAUSED", "RATE_LIMIT_ENABLED"}
        }
        base.update(
            DJANGO_SETTINGS_MODULE="comcenter.settings",
            SECRET_KEY="test-" + secrets.token_urlsafe(40),
            DATABASE_URL=database_url(),
            LOG_LEVEL="ERROR",
            PYTHONPATH=str(ROOT),
        )
        base.update(env)
        started = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.delivery.worker"],
                cwd=ROOT,
                env=base,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            for _ in range(count)
        ]
        for process in started:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready", "a worker failed to start"
        self.processes += started
        return started

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = []


@pytest.fixture
def workers(transactional_db: Any) -> Iterator[Workers]:
    pool = Workers()
    try:
        yield pool
    finally:
        pool.stop()
