"""What the web nodes count for the guard: answers by class, bearer outcomes on the intake,
ack latencies, in buckets of the shared store (Redis when configured, else the database)."""

from __future__ import annotations

import time

import pytest

from comcenter.lib.redis import shared_redis
from flags.models import FlagSource
from flags.services import flag_set
from guard.measurements import (
    ack_percentile,
    backend,
    measurement_add,
    measurements_purge,
    measurements_read,
    measurements_sum,
)

pytestmark = pytest.mark.usefixtures("store")


def _window() -> dict[str, int]:
    now = time.time()
    return measurements_sum(measurements_read(resolution=1, since=now - 60, until=now).values())


def test_it_counts_acks_and_bearer_outcomes_of_the_intake(alice, make_event, client) -> None:
    for index in range(3):
        assert alice.post_event(make_event(f"m-{index}")).status_code == 202
    assert alice.post_event(make_event("m-0")).status_code == 200  # a duplicate is an ack too
    response = client.post(
        "/api/v1/events", data="{}", content_type="application/json", HTTP_AUTHORIZATION="Bearer x"
    )
    assert response.status_code == 401
    counts = _window()
    assert counts["answers"] == 5
    assert counts["auth_ok"] == 4
    assert counts["auth_fail"] == 1
    assert counts["ack_n"] == 4
    assert "errors" not in counts


def test_it_leaves_probes_and_scrapes_out(client, db) -> None:
    for path in ("/health", "/health/live", "/canary", "/metrics"):
        client.get(path)
    assert _window() == {}


def test_it_counts_a_paused_intake_as_refused_not_as_a_fault(alice, make_event) -> None:
    flag_set(name="INTAKE_PAUSED", value=True, actor="o", reason="drill", source=FlagSource.ADMIN)
    assert alice.post_event(make_event("p-1")).status_code == 503
    counts = _window()
    assert counts == {"answers": 1, "refused": 1}


def test_it_counts_a_server_error_as_a_fault(alice, make_event, monkeypatch) -> None:
    from events import services

    def broken(**kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(services, "event_accept", broken)
    alice.client.raise_request_exception = False
    assert alice.post_event(make_event("e-1")).status_code == 500
    counts = _window()
    assert counts["errors"] == 1
    assert counts["answers"] == 1


def test_it_sums_what_several_writers_add_to_one_bucket() -> None:
    at = time.time()
    measurement_add({"answers": 2, "errors": 1}, at=at)
    measurement_add({"answers": 3}, at=at)
    counts = _window()
    assert counts == {"answers": 5, "errors": 1}
    hour = measurements_read(resolution=3600, since=at - 3600, until=at)
    assert measurements_sum(hour.values()) == {"answers": 5, "errors": 1}


def test_it_gives_the_p95_as_the_bound_of_its_bucket() -> None:
    counts = {"ack_n": 100, "ack_le_10": 94, "ack_le_400": 6}
    assert ack_percentile(counts, 0.95) == 400
    counts = {"ack_n": 100, "ack_le_10": 95, "ack_le_400": 5}
    assert ack_percentile(counts, 0.95) == 10


def test_it_drops_fine_buckets_past_their_retention(settings) -> None:
    now = time.time()
    retention = settings.GUARD_FINE_RETENTION_SECONDS
    old = now - retention - 10
    measurement_add({"answers": 1}, at=old)
    measurement_add({"answers": 1}, at=now)
    if backend() == "redis":  # Redis expires each bucket's hash itself
        ttl = shared_redis().ttl(f"comcenter:guard:m:1:{int(now)}")
        assert 0 < ttl <= retention + 1
        return
    measurements_purge(now=now)
    fine = measurements_read(resolution=1, since=old - 5, until=now)
    assert sum(c["answers"] for c in fine.values()) == 1
