"""GET /api/v1/events/{id}: a caller sees its own events only."""

from __future__ import annotations

import uuid


def test_it_shows_the_event_to_its_caller(alice, make_event):
    created = alice.post_event(make_event(sequence=2), HTTP_X_REQUEST_ID="req-1").json()
    response = alice.client.get(f"/api/v1/events/{created['id']}")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == created["id"]
    assert body["status"] == "accepted"
    assert body["event_type"] == "deadline_soon"
    assert body["idempotency_key"] == "evt-1"
    assert body["ordering_key"] == "student-42"
    assert body["sequence"] == 2
    assert body["request_id"] == "req-1"
    assert body["received_at"]
    assert isinstance(body["messages"], list)


def test_it_hides_other_callers_events(alice, bob, make_event):
    created = alice.post_event(make_event()).json()
    response = bob.client.get(f"/api/v1/events/{created['id']}")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_it_answers_404_for_an_unknown_id(alice):
    assert alice.client.get(f"/api/v1/events/{uuid.uuid4()}").status_code == 404


def test_it_answers_404_in_json_for_a_malformed_id(alice):
    response = alice.client.get("/api/v1/events/not-a-uuid")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_it_needs_the_read_scope(alice, db, event_types, make_event):
    from tests.conftest import Actor

    writer = Actor("writer-only", ["events:write"])
    created = writer.post_event(make_event()).json()
    response = writer.client.get(f"/api/v1/events/{created['id']}")
    assert response.status_code == 403
