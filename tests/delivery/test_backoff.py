"""Retry delays: exponential backoff with full jitter, bounded, with Retry-After as a floor."""

from __future__ import annotations

import random

import pytest

from delivery.retries import retry_delay


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 30), (2, 60), (3, 120), (4, 240), (7, 1920), (8, 3600), (20, 3600)],
)
def test_it_stays_within_the_exponential_ceiling(attempt, ceiling):
    random.seed(attempt)
    delays = [retry_delay(attempt=attempt) for _ in range(500)]

    assert all(1 <= d <= ceiling for d in delays)  # never within the second of the failure
    # Full jitter spreads over the whole range rather than clustering at the top.
    assert min(delays) < ceiling * 0.1
    assert max(delays) > ceiling * 0.9


def test_it_follows_the_configured_base_and_cap(settings):
    settings.RETRY_BASE_SECONDS = 2
    settings.RETRY_CAP_SECONDS = 5
    random.seed(1)

    assert max(retry_delay(attempt=1) for _ in range(300)) <= 2
    assert max(retry_delay(attempt=6) for _ in range(300)) <= 5


def test_it_never_retries_sooner_than_retry_after():
    random.seed(2)

    delays = [retry_delay(attempt=1, retry_after=45) for _ in range(200)]

    assert min(delays) >= 45
    assert max(delays) <= 45  # the jittered 0-30 s never beats the provider's floor


def test_it_honours_a_retry_after_beyond_the_cap():
    assert retry_delay(attempt=3, retry_after=7200) == 7200
