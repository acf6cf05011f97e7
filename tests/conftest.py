"""Shared fixtures: named service accounts (alice, bob) with tokens, and an API client."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import cache
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
