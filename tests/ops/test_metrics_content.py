"""What /metrics says: request metrics by view, intake outcomes, and database state read at
scrape time (so every worker reports the same)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from flags.models import FlagSource
from flags.registry import FLAGS
from flags.services import flag_set
from tests.conftest import Actor

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_proxy")]


def scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_it_counts_intake_outcomes_by_reason(
    client: Client, alice: Actor, make_event: Callable[..., dict[str, Any]]
) -> None:
    before = scrape(client)
    alice.post_event(make_event(key="m-1"))
    alice.post_event(make_event(key="m-1"))
    alice.post_event(make_event(key="m-1", data={"other": "payload"}))
    alice.post_event("{not json")
    after = scrape(client)

    def delta(**labels: str) -> float:
        name = "comcenter_events_total"
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta(outcome="accepted", reason="") == 1
    assert delta(outcome="duplicate", reason="") == 1
    assert delta(outcome="conflict", reason="payload_mismatch") == 1
    assert delta(outcome="rejected", reason="malformed_json") == 1


def test_it_observes_ack_latency(
    client: Client, alice: Actor, make_event: Callable[..., dict[str, Any]]
) -> None:
    before = value(scrape(client), "comcenter_ack_latency_seconds_count")
    alice.post_event(make_event(key="m-2"))
    assert value(scrape(client), "comcenter_ack_latency_seconds_count") == before + 1


def test_it_counts_requests_by_view(client: Client, alice: Actor) -> None:
    name = "django_http_responses_total_by_status_view_method_total"
    labels = {"status": "405", "view": "events", "method": "GET"}
    before = value(scrape(client), name, **labels)
    alice.client.get("/api/v1/events")
    assert value(scrape(client), name, **labels) == before + 1


def test_it_counts_auth_failures_by_reason(client: Client) -> None:
    name = "comcenter_auth_failures_total"
    before = value(scrape(client), name, reason="malformed")
    client.post("/api/v1/events", HTTP_AUTHORIZATION="Bearer not-a-jwt")
    assert value(scrape(client), name, reason="malformed") == before + 1


def test_it_reports_the_effective_flags(client: Client) -> None:
    samples = scrape(client)
    for name, definition in FLAGS.items():
        assert value(samples, "comcenter_flag_enabled", flag=name) == float(definition.default)
    flag_set(
        name="DISPATCH_PAUSED", value=True, actor="alice", reason="test", source=FlagSource.ADMIN
    )
    assert value(scrape(client), "comcenter_flag_enabled", flag="DISPATCH_PAUSED") == 1.0


def test_it_reports_the_outbox_from_the_database(
    client: Client, alice: Actor, make_event: Callable[..., dict[str, Any]]
) -> None:
    before = value(scrape(client), "comcenter_outbox_pending")
    alice.post_event(make_event(key="m-3"))
    # Nothing consumes the outbox inside this test: the event is still pending.
    assert value(scrape(client), "comcenter_outbox_pending") == before + 1


def test_it_reports_the_queue_from_the_database(client: Client) -> None:
    samples = scrape(client)
    assert value(samples, "comcenter_scrape_source_ok", source="queue") == 1.0
    assert ("comcenter_queue_depth", ()) in samples
    assert ("comcenter_dlq_ratio", ()) in samples
    assert ("comcenter_queue_oldest_pending_age_seconds", ()) in samples
