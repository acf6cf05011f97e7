"""Fixtures of the guard tests: an empty measurement store, fresh flag and health caches, and
short windows (seconds) so a trigger can trip within a test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from comcenter.health import health_forget
from flags.services import flags_forget_cache
from guard.measurements import measurements_forget


def _fresh_store(settings: Any) -> Iterator[None]:
    settings.GUARD_FLUSH_SECONDS = 0.0
    settings.GUARD_BUCKET_SECONDS = 1
    settings.GUARD_WINDOW_SECONDS = 60
    settings.GUARD_MIN_REQUESTS = 20
    measurements_forget()
    health_forget()
    flags_forget_cache()
    yield
    measurements_forget()


@pytest.fixture
def store(db: Any, settings: Any) -> Iterator[None]:
    """The shared store (Redis when configured, else the database), empty; every answer is
    flushed at once so a test reads exactly what it sent."""
    yield from _fresh_store(settings)


@pytest.fixture
def live_store(transactional_db: Any, settings: Any) -> Iterator[None]:
    """The same, with committed rows, for tests whose web servers are other processes."""
    yield from _fresh_store(settings)
