"""POST /api/v1/events: what a valid event becomes."""

from __future__ import annotations

import uuid

from audit.models import AuditRecord
from events.models import Event, EventStatus, OutboxState


def test_it_answers_202_with_the_contract_shape(alice, make_event):
    response = alice.post_event(make_event())
    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"id", "status", "duplicate", "request_id"}
    assert body["status"] == "accepted"
    assert body["duplicate"] is False
    uuid.UUID(body["id"])
    assert response["X-Request-ID"] == body["request_id"]


def test_it_stores_the_event_with_its_outbox_entry(alice, make_event):
    response = alice.post_event(make_event(sequence=3, ordering_key="student-42-deadlines"))
    event = Event.objects.get(uid=response.json()["id"])
    assert event.caller == f"sa:{alice.client_id}"
    assert event.event_type == "deadline_soon"
    assert event.idempotency_key == "evt-1"
    assert event.ordering_key == "student-42-deadlines"
    assert event.sequence == 3
    assert event.recipient_id == "student-42"
    assert event.recipient["email"] == "a@example.org"
    assert event.data == {"scholarship": "STEM Futures", "deadline": "2026-12-01"}
    assert event.status == EventStatus.ACCEPTED
    # The consumer may already have run (ORM broker in tests runs nothing), so the row is
    # still the pending outbox entry.
    assert event.outbox_state == OutboxState.PENDING


def test_it_defaults_the_ordering_key_to_the_recipient_id(alice, make_event):
    response = alice.post_event(make_event())
    assert Event.objects.get(uid=response.json()["id"]).ordering_key == "student-42"


def test_it_echoes_a_safe_request_id_and_stores_it(alice, make_event):
    response = alice.post_event(make_event(), HTTP_X_REQUEST_ID="req-abc.123")
    assert response["X-Request-ID"] == "req-abc.123"
    event = Event.objects.get(uid=response.json()["id"])
    assert event.request_id == "req-abc.123"
    lineage = AuditRecord.objects.get(event_uid=event.uid, kind="event.received")
    assert lineage.request_id == "req-abc.123"
    assert lineage.actor == f"sa:{alice.client_id}"


def test_it_replaces_an_unsafe_request_id(alice, make_event):
    response = alice.post_event(make_event(), HTTP_X_REQUEST_ID="bad id\nwith newline")
    assert response["X-Request-ID"] != "bad id\nwith newline"
    assert len(response["X-Request-ID"]) == 32


def test_it_takes_the_idempotency_key_from_the_header(alice, make_event):
    body = make_event()
    del body["idempotency_key"]
    response = alice.post_event(body, HTTP_IDEMPOTENCY_KEY="hdr-key-1")
    assert response.status_code == 202
    assert Event.objects.get(uid=response.json()["id"]).idempotency_key == "hdr-key-1"


def test_it_accepts_a_phone_only_recipient(alice, make_event):
    response = alice.post_event(make_event(recipient={"id": "s-1", "phone": "+447700900123"}))
    assert response.status_code == 202


def test_it_accepts_timestamps_and_stores_them(alice, make_event):
    response = alice.post_event(
        make_event(occurred_at="2026-11-21T20:00:00Z", expires_at="2026-12-01T00:00:00+01:00")
    )
    event = Event.objects.get(uid=response.json()["id"])
    assert event.occurred_at.isoformat() == "2026-11-21T20:00:00+00:00"
    assert event.expires_at.isoformat() == "2026-11-30T23:00:00+00:00"
