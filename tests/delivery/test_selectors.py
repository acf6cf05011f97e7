"""The reads other apps use: an event's messages (the API) and queue statistics (metrics)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from delivery.models import Message
from delivery.outbox import outbox_consume
from delivery.selectors import messages_for_event, queue_stats
from tests.delivery.conftest import run_pump


def test_it_lists_an_events_messages(routes, accept):
    event = accept()
    run_pump()

    rows = messages_for_event(event)

    assert [(r["channel"], r["state"], r["template"], r["attempts"]) for r in rows] == [
        ("email", "dry_run", "deadline_soon_email", 0),
        ("sms", "dry_run", "deadline_soon_sms", 0),
    ]
    assert {r["id"] for r in rows} == set(Message.objects.values_list("uid", flat=True))


def test_the_api_shows_the_messages(alice, routes, make_event):
    response = alice.post_event(make_event(data={"scholarship": "S", "deadline": "D", "seq": 1}))
    run_pump()

    detail = alice.client.get(f"/api/v1/events/{response.json()['id']}").json()

    assert [(m["channel"], m["state"]) for m in detail["messages"]] == [
        ("email", "dry_run"),
        ("sms", "dry_run"),
    ]


def test_it_reports_depth_age_and_the_dead_letter_ratio(routes, accept, pending_expansion):
    for _ in range(3):
        accept()
    outbox_consume()
    messages = list(Message.objects.order_by("id"))
    Message.objects.filter(pk=messages[0].pk).update(state="dead")
    Message.objects.filter(pk__in=[m.pk for m in messages[1:4]]).update(state="sent")
    Message.objects.filter(pk=messages[4].pk).update(
        state="retrying", next_attempt_at=timezone.now() - timedelta(minutes=5)
    )

    stats = queue_stats()

    assert stats["depth"] == 2
    assert stats["by_state"]["pending"] == 1
    assert stats["by_state"]["retrying"] == 1
    assert stats["dead"] == 1
    assert stats["dlq_ratio"] == 0.25
    assert 299 <= stats["oldest_pending_age_seconds"] <= 600


def test_it_reports_an_empty_queue(db):
    stats = queue_stats()

    assert stats["depth"] == 0
    assert stats["oldest_pending_age_seconds"] is None
    assert stats["dlq_ratio"] == 0.0
