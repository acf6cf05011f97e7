"""Intake throttles: per client for bearer callers, per source for webhooks, each 429 with
Retry-After; one caller's excess never throttles another. Each process reserves a chunk of a
caller's window quota in the shared counter at once, and the processes together never admit
more than the limit."""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient, APIRequestFactory

from comcenter.lib.redis import shared_redis
from identity.throttles import (
    IntakeThrottle,
    LocalQuota,
    TokenThrottle,
    WebhookThrottle,
    chunk_for,
    local_quota,
    window_count,
)
from tests.identity.support import Partners, body_of

MakeEvent = Callable[..., dict[str, Any]]


@pytest.fixture
def two_per_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    # DRF reads the rates when the class is defined; set the rate on the classes instead.
    monkeypatch.setattr(IntakeThrottle, "rate", "2/min", raising=False)
    monkeypatch.setattr(WebhookThrottle, "rate", "2/min", raising=False)


def test_it_throttles_each_client_with_retry_after(
    two_per_minute: None, alice: Any, bob: Any, make_event: MakeEvent
) -> None:
    codes = [alice.post_event(make_event(f"evt-{n}")).status_code for n in range(3)]
    assert codes == [202, 202, 429]
    throttled = alice.post_event(make_event("evt-9"))
    assert throttled.json()["error"] == "throttled"
    assert int(throttled["Retry-After"]) > 0
    assert bob.post_event(make_event("evt-1")).status_code == 202


def test_it_throttles_each_webhook_source_with_retry_after(
    two_per_minute: None, partners: Partners, make_event: MakeEvent
) -> None:
    acme, globex = partners.acme, partners.globex
    body = body_of(make_event)
    codes = [acme.send(body, message_id=f"msg_{n}").status_code for n in range(3)]
    assert codes == [202, 202, 429]
    assert int(acme.send(body, message_id="msg_9")["Retry-After"]) > 0
    assert globex.send(body, message_id="msg_1").status_code == 202


def test_it_counts_only_signed_webhooks_against_a_source(
    two_per_minute: None, partners: Partners, make_event: MakeEvent
) -> None:
    body = body_of(make_event)
    unsigned = {
        "HTTP_WEBHOOK_ID": "msg_x",
        "HTTP_WEBHOOK_TIMESTAMP": "1",
        "HTTP_WEBHOOK_SIGNATURE": "v1,AA==",
    }
    for _ in range(3):
        response = APIClient().post(
            "/api/v1/webhooks/acme",
            data=json.dumps({}),
            content_type="application/json",
            **unsigned,
        )
        assert response.status_code == 401
    assert partners.acme.send(body, message_id="msg_1").status_code == 202


# --- quota reservation: each process takes a chunk of the window's quota at once -------------

MINUTE = 60
NOW = 1_800_000_000.0  # the start of a minute window


def counter_value(key: str) -> int:
    """The shared counter of `key`: Redis on the PostgreSQL run, the local cache without it."""
    client = shared_redis()
    value = client.get(key) if client is not None else cache.get(key)
    return int(value or 0)


def window_key(counter: str, now: float = NOW) -> str:
    return f"{counter}:{int(now // MINUTE)}"


@pytest.fixture
def counter(db: Any) -> str:
    return f"throttle:test:{uuid.uuid4().hex}"


def takes(quota: LocalQuota, counter: str, *, limit: int, times: int, now: float = NOW) -> int:
    return sum(quota.take(counter, limit=limit, duration=MINUTE, now=now) for _ in range(times))


def test_it_sizes_the_chunk_so_that_small_limits_stay_exact() -> None:
    assert [chunk_for(limit) for limit in (1, 2, 60, 127)] == [1, 1, 1, 1]
    assert [chunk_for(limit) for limit in (128, 640, 1000, 1024)] == [2, 10, 15, 16]
    assert chunk_for(6000) == chunk_for(1_000_000) == 16


def test_it_counts_a_small_limit_request_by_request(counter: str) -> None:
    quota = LocalQuota()
    assert takes(quota, counter, limit=60, times=60) == 60
    assert counter_value(window_key(counter)) == 60
    assert not quota.take(counter, limit=60, duration=MINUTE, now=NOW)
    assert len(quota) == 0  # nothing reserved ahead


def test_it_reserves_a_chunk_per_round_trip(counter: str) -> None:
    quota = LocalQuota()
    assert takes(quota, counter, limit=6400, times=20) == 20
    # Two INCRBY of 16, not twenty INCR: 12 requests are still reserved in this process.
    assert counter_value(window_key(counter)) == 32
    assert takes(quota, counter, limit=6400, times=12) == 12
    assert counter_value(window_key(counter)) == 32


def test_it_keeps_only_what_was_left_under_the_limit(counter: str) -> None:
    window_count(window_key(counter), MINUTE + 1, amount=990)  # other processes' share
    quota = LocalQuota()
    assert takes(quota, counter, limit=1000, times=15) == 10
    assert not quota.take(counter, limit=1000, duration=MINUTE, now=NOW)


def test_it_never_admits_more_than_the_limit_across_processes(counter: str) -> None:
    first, second = LocalQuota(), LocalQuota()  # two web processes, one Redis counter
    admitted = [0, 0]
    for n in range(3000):
        which = n % 3 == 0  # an uneven share: the second process gets a third of the requests
        quota = second if which else first
        admitted[which] += quota.take(counter, limit=1000, duration=MINUTE, now=NOW)
        if n == 299:
            # 200 and 100 requests so far: whole chunks of 15 each, one round trip per chunk.
            assert counter_value(window_key(counter)) == 14 * 15 + 7 * 15
    # Every reserved request was used before the window ended, so none was lost here.
    assert sum(admitted) == 1000
    assert admitted[1] >= 300


def test_it_starts_a_new_quota_in_the_next_window(counter: str) -> None:
    quota = LocalQuota()
    assert takes(quota, counter, limit=2, times=3, now=NOW + MINUTE - 0.5) == 2
    assert takes(quota, counter, limit=2, times=3, now=NOW + MINUTE) == 2
    assert counter_value(window_key(counter, NOW + MINUTE)) == 3


def test_it_drops_the_quota_reserved_in_past_windows(counter: str) -> None:
    quota = LocalQuota()
    for n in range(100):  # a hundred callers, each with requests reserved in this window
        assert quota.take(f"{counter}:{n}", limit=6400, duration=MINUTE, now=NOW + 1)
    assert len(quota) == 100
    assert quota.take(f"{counter}:0", limit=6400, duration=MINUTE, now=NOW + MINUTE)
    assert len(quota) == 1  # only the reservation of the new window is held


def test_it_does_not_reuse_quota_reserved_under_another_rate(counter: str) -> None:
    quota = LocalQuota()
    assert takes(quota, counter, limit=6400, times=1) == 1
    assert takes(quota, counter, limit=20, times=5) == 4  # 16 + 4 of 20 counted
    assert counter_value(window_key(counter)) == 21


def test_it_forgets_reserved_quota_in_a_forked_child(counter: str) -> None:
    local_quota.take(counter, limit=6400, duration=MINUTE, now=NOW)
    assert len(local_quota) >= 1
    pid = os.fork()
    if pid == 0:  # the child: a worker forked from a process that served requests
        os._exit(0 if len(local_quota) == 0 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(local_quota) >= 1  # the parent keeps its own
    local_quota.forget()


def test_it_accepts_and_warns_when_the_shared_counter_is_down(
    settings: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    monkeypatch.setattr(TokenThrottle, "rate", "2/min", raising=False)
    request = APIRequestFactory().post("/api/v1/token")
    with caplog.at_level(logging.WARNING, logger="identity.throttles"):
        assert [TokenThrottle().allow_request(request, None) for _ in range(3)] == [True] * 3
    causes = [getattr(record, "cause", None) for record in caplog.records]
    assert causes == ["cache_unavailable"] * 3
