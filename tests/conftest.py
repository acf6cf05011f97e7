"""Shared fixtures: named service accounts (alice, bob) with tokens, and an API client."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

from events.services import event_type_ensure
from flags.services import flags_forget_cache
from guard.measurements import measurements_discard
from identity.auth import issue_access_token
from identity.services import service_account_create

# Real loopback servers for the network edge: smtp_server, sms_gateway.
pytest_plugins = ["tests.support.fixtures", "tests.identity.fixtures"]


@pytest.fixture(scope="session", autouse=True)
def _no_counts_at_exit() -> Iterator[None]:
    # The guard's measurements are buffered per process and written at exit; the test
    # database is gone by then, so the last test's counts are dropped instead.
    yield
    measurements_discard()


# The configured database's name: pytest-django renames the connection's database to the test
# database's once it has created that.
_CONFIGURED_DATABASE = settings.DATABASES["default"]["NAME"]
# How long a connection closed at a module's end may still be listed: the server process of a
# closed session exits just after its client.
_SESSION_EXIT_SECONDS = 3.0


def _other_sessions() -> list[tuple[Any, ...]]:
    """Client sessions on the test database other than this thread's own."""
    deadline = time.monotonic() + _SESSION_EXIT_SECONDS
    while True:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT pid, application_name, backend_start, state, left(query, 200)"
                " FROM pg_stat_activity WHERE datname = current_database()"
                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
            )
            others = cursor.fetchall()
        if not others or time.monotonic() > deadline:
            return others
        time.sleep(0.05)


@pytest.fixture(scope="module", autouse=True)
def _no_database_session_outlives_its_module(django_db_blocker: Any) -> Iterator[None]:
    # What a module's tests start (threads, web servers, workers) must have closed its
    # connections by the module's end: PostgreSQL refuses to drop a database others are
    # connected to, so one left open would leave the test database behind after the run.
    yield
    if (
        connection.vendor != "postgresql"
        or connection.settings_dict["NAME"] == _CONFIGURED_DATABASE
    ):
        return  # SQLite, or no test database yet
    with django_db_blocker.unblock():
        others = _other_sessions()
    assert others == [], f"sessions left on the test database: {others}"


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    # Throttle counters and coalescing markers must not leak between tests, nor the flag
    # values a process caches (a rolled-back test's flag change would outlive it).
    cache.clear()
    flags_forget_cache()


@pytest.fixture
def olivia(db: Any, client: Any) -> Any:
    """An operator: a test client logged in to the admin as a superuser."""
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_superuser(
        "olivia", "olivia@example.org", "pw-olivia-1234"
    )
    client.force_login(user)
    return client


@pytest.fixture
def event_types(db: Any) -> list[str]:
    names = ["deadline_soon", "new_match", "ticket.created"]
    for name in names:
        event_type_ensure(name=name)
    return names


class Actor:
    """A service account with a ready bearer token."""

    def __init__(self, name: str, scopes: list[str]) -> None:
        self.account, self.secret = service_account_create(name=name, scopes=scopes)
        self.token = str(issue_access_token(self.account, scopes))
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.token}")

    @property
    def client_id(self) -> str:
        return self.account.client_id

    def post_event(self, body: dict[str, Any] | str, **headers: str) -> Any:
        raw = body if isinstance(body, str) else json.dumps(body)
        return self.client.post(
            "/api/v1/events", data=raw, content_type="application/json", **headers
        )


@pytest.fixture
def alice(db: Any, event_types: list[str]) -> Actor:
    return Actor("alice", ["events:write", "events:read"])


@pytest.fixture
def bob(db: Any, event_types: list[str]) -> Actor:
    return Actor("bob", ["events:write", "events:read"])


@pytest.fixture
def reader(db: Any, event_types: list[str]) -> Actor:
    return Actor("charlie-reader", ["events:read"])


@pytest.fixture
def make_event() -> Callable[..., dict[str, Any]]:
    def make(key: str = "evt-1", **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "event_type": "deadline_soon",
            "idempotency_key": key,
            "recipient": {
                "id": "student-42",
                "email": "a@example.org",
                "phone": "+12025550123",
                "locale": "en",
            },
            "data": {"scholarship": "STEM Futures", "deadline": "2026-12-01"},
        }
        body.update(overrides)
        return body

    return make
