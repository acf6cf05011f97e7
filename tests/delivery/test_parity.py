"""Both writers of every database write path give the same rows: the ORM path (what SQLite
runs) and the hand-built SQL of PostgreSQL, run on the same fixtures on PostgreSQL.

What differs by nature is left out: ids, uids, and database times (compared as set or
unset)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, models
from django.db.models.functions import Now

from audit.models import AuditRecord
from audit.services import audit_append_many, audit_build
from comcenter.lib import db as db_module
from delivery import transitions
from delivery.models import Attempt, AttemptOutcome, Lane, Message, MessageState
from delivery.outbox import outbox_consume
from delivery.transitions import TRANSITIONS, Change, Effect, message_transition
from events import services as event_services
from events.models import Event
from tests.delivery.conftest import make_payload

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="compares the PostgreSQL SQL with the ORM path"
)

IDS = {"id", "uid", "event", "message", "lane", "route", "template", "template_version"}


def _row(obj: models.Model, leave_out: set[str] = frozenset()) -> dict[str, Any]:
    row = {}
    for field in obj._meta.concrete_fields:
        if field.name in IDS or field.name in leave_out:
            continue
        value = getattr(obj, field.attname)
        if isinstance(field, models.DateTimeField):
            value = value is not None
        row[field.name] = value
    return row


def _lineage(message: Message) -> list[dict[str, Any]]:
    rows = AuditRecord.objects.filter(message_uid=message.uid).order_by("id")
    return [_row(r, {"event_uid", "message_uid", "request_id"}) for r in rows]


def _snapshot(message: Message) -> dict[str, Any]:
    message.refresh_from_db()
    return {
        "message": _row(message, {"ordering_key"}),
        "lane": _row(Lane.objects.get(pk=message.lane_id), {"caller", "ordering_key"}),
        "attempts": [
            _row(a, {"idempotency_key"})
            for a in Attempt.objects.filter(message=message).order_by("id")
        ],
        "lineage": _lineage(message),
    }


@pytest.fixture
def message_in(email_only, accept) -> Callable[[str, int], Message]:
    """A message of its own lane in `state`, with sequence 2 and, when dispatching, a busy
    lane and the claim's token."""
    count = iter(range(10_000))

    def make(state: str, token: int) -> Message:
        event = accept(ordering_key=f"key-{next(count)}", sequence=2)
        outbox_consume()
        message = Message.objects.get(event=event)
        Message.objects.filter(pk=message.pk).update(
            state=state,
            lease_token=7,
            lease_until=Now() if state == MessageState.DISPATCHING else None,
        )
        if state == MessageState.DISPATCHING:
            Lane.objects.filter(pk=message.lane_id).update(busy_until=Now(), done_sequence=1)
        message = Message.objects.select_related("event").get(pk=message.pk)
        message.lease_token = token
        return message

    return make


def _change(message: Message) -> Change:
    attempt = None
    if message.state == MessageState.DISPATCHING:
        attempt = Attempt(
            message=message,
            number=1,
            lease_token=message.lease_token,
            started_at=message.received_at,
            outcome=AttemptOutcome.SENT,
            provider="smtp",
            response_code="250",
            idempotency_key=str(message.uid),
        )
    return Change(
        message=message,
        values={
            "attempts": 1,
            "last_error": "",
            "provider": "smtp",
            "provider_message_id": "<x@y>",
            "next_attempt_at": Now(),
        },
        data={"note": "parity"},
        attempt=attempt,
    )


def _move(
    message: Message, target: str, *, orm: bool, monkeypatch: pytest.MonkeyPatch
) -> list[Message]:
    with monkeypatch.context() as patch:
        if orm:
            patch.setattr(transitions, "is_postgres", lambda: False)
        return message_transition(
            changes=[_change(message)], state=target, reason="parity", durable=False
        )


EDGES = [pytest.param(source, target, id=f"{source}->{target}") for source, target in TRANSITIONS]


@pytest.mark.parametrize(("source", "target"), EDGES)
def test_it_writes_the_same_rows_with_both_transition_writers(
    source, target, message_in, monkeypatch
):
    fenced = Effect.FENCED in TRANSITIONS[(source, target)].effects
    # A fenced edge also meets a superseded worker (its token is no longer the message's).
    tokens = [7, 6] if fenced else [7]
    for token in tokens:
        orm, sql = message_in(source, token), message_in(source, token)

        moved_orm = _move(orm, target, orm=True, monkeypatch=monkeypatch)
        moved_sql = _move(sql, target, orm=False, monkeypatch=monkeypatch)

        assert len(moved_orm) == len(moved_sql) == (1 if token == 7 else 0)
        by_orm, by_sql = _snapshot(orm), _snapshot(sql)
        for part in ("message", "lane", "attempts", "lineage"):
            assert by_orm[part] == by_sql[part], part


def test_it_inserts_the_same_rows_with_copy_and_bulk_create(db, monkeypatch):
    def records(tag: str) -> list[AuditRecord]:
        return [
            audit_build(
                kind=f"parity.{tag}", actor="alice", recipient_id="r-1", data={"n": n, "tag": None}
            )
            for n in range(3)
        ]

    with monkeypatch.context() as patch:
        patch.setattr(db_module, "is_postgres", lambda: False)
        audit_append_many(records("x"))
    audit_append_many(records("x"))

    rows = [
        _row(r, {"request_id"}) for r in AuditRecord.objects.filter(kind="parity.x").order_by("id")
    ]
    assert len(rows) == 6
    assert rows[:3] == rows[3:]


def test_it_accepts_an_event_with_the_same_rows_on_both_intake_paths(db, monkeypatch):
    def accept(key: str) -> Event:
        return event_services.event_accept(
            caller="sa:alice",
            payload=make_payload(sequence=3, ordering_key="k", expires_at="2030-01-01T00:00:00Z"),
            idempotency_key=key,
            request_id="req-parity",
        ).event

    with monkeypatch.context() as patch:
        patch.setattr(event_services, "is_postgres", lambda: False)
        orm = accept("parity-orm")
    sql = accept("parity-sql")

    returned = {f.name for f in Event._meta.concrete_fields if f.primary_key or f.has_db_default()}
    assert {name: getattr(sql, name) is not None for name in returned} == dict.fromkeys(
        returned, True
    )
    stored = [_row(Event.objects.get(pk=e.pk), {"idempotency_key"}) for e in (orm, sql)]
    assert stored[0] == stored[1]
    lineage = [
        _row(
            AuditRecord.objects.get(event_uid=e.uid, kind="event.received"),
            {"event_uid"},
        )
        for e in (orm, sql)
    ]
    assert lineage[0] == lineage[1]
