"""Each process caches effective values for FLAG_CACHE_SECONDS, then sees every change."""

from __future__ import annotations

import pytest

from flags import services
from flags.models import Flag
from flags.services import flag_is_on, flags_forget_cache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(services, "_clock", fake)
    return fake


def _write_row_behind_the_cache(name: str, value: bool) -> None:
    # As another node would: a direct write this process's cache knows nothing about.
    Flag.objects.update_or_create(name=name, defaults={"value": value, "reason": "other node"})


def test_it_serves_cached_values_within_the_window(db, settings, clock, django_assert_num_queries):
    settings.FLAG_ENV = {}
    settings.FLAG_CACHE_SECONDS = 2.0
    assert flag_is_on("DISPATCH_PAUSED") is False
    _write_row_behind_the_cache("DISPATCH_PAUSED", True)
    clock.now += 1.9
    with django_assert_num_queries(0):
        assert flag_is_on("DISPATCH_PAUSED") is False
        assert flag_is_on("DISABLE_SEND") is True


def test_it_sees_another_nodes_change_after_the_window(db, settings, clock):
    settings.FLAG_ENV = {}
    settings.FLAG_CACHE_SECONDS = 2.0
    assert flag_is_on("DISPATCH_PAUSED") is False
    _write_row_behind_the_cache("DISPATCH_PAUSED", True)
    clock.now += 2.0
    assert flag_is_on("DISPATCH_PAUSED") is True


def test_it_reads_all_flags_in_one_query_per_window(db, settings, clock, django_assert_num_queries):
    settings.FLAG_ENV = {}
    with django_assert_num_queries(1):
        for _ in range(50):
            flag_is_on("DISABLE_SEND")
            flag_is_on("PROMO_SENDS")


def test_it_rereads_after_forget(db, settings, clock):
    settings.FLAG_ENV = {}
    assert flag_is_on("PROMO_SENDS") is False
    _write_row_behind_the_cache("PROMO_SENDS", True)
    flags_forget_cache()
    assert flag_is_on("PROMO_SENDS") is True


def test_it_keeps_the_window_within_the_spec(settings):
    # Every node within 5 s. The window is the only delay of a per-process cache.
    assert settings.FLAG_CACHE_SECONDS <= 5
