"""The intake's unsaved event as `_event_build` makes it: it passes values by position, so a
field added or moved in the model must not shift them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from events.models import Event, EventStatus, OutboxState
from events.services import _event_build

# A distinct value for every field, so that two values swapped by position cannot go unseen.
VALUES: dict[str, Any] = {
    "caller": "sa:alice",
    "event_type": "deadline_soon",
    "idempotency_key": "key-1",
    "payload_hash": "a" * 64,
    "ordering_key": "order-1",
    "sequence": 7,
    "recipient": {"id": "rcp-1", "email": "a@example.org"},
    "data": {"n": 1},
    "occurred_at": datetime(2026, 11, 21, 20, 0, tzinfo=UTC),
    "expires_at": datetime(2026, 12, 1, tzinfo=UTC),
    "request_id": "req-1",
    "status": EventStatus.AUTH_PENDING,
    "pending_token": "token-1",
    "outbox_state": OutboxState.HELD,
}


def test_it_puts_each_value_in_its_field_as_keywords_do() -> None:
    built = _event_build(**VALUES)
    by_keyword = Event(recipient_id="rcp-1", **VALUES)

    for field in Event._meta.concrete_fields:
        if field.name in ("uid", "received_at"):
            continue
        assert getattr(built, field.attname) == getattr(by_keyword, field.attname), field.name
    assert type(built.received_at) is type(by_keyword.received_at)
    assert built._state.adding


def test_it_gives_each_event_a_new_uid() -> None:
    first, second = _event_build(**VALUES), _event_build(**VALUES)

    assert isinstance(first.uid, uuid.UUID)
    assert first.uid.version == 4
    assert first.uid != second.uid
