"""Lineage rows as `audit_build` makes them (it passes values by position, so a field added
or moved in the model must not shift them) and as `rows_insert` stores them."""

from __future__ import annotations

import uuid

import pytest

from audit.models import AuditRecord
from audit.services import audit_build
from comcenter.lib.context import request_id_bound
from comcenter.lib.db import rows_insert

EVENT = uuid.UUID(int=1)
MESSAGE = uuid.UUID(int=2)


def _built(**fields: object) -> AuditRecord:
    return audit_build(
        kind="message.pending",
        event_uid=EVENT,
        message_uid=MESSAGE,
        recipient_id="rcp-1",
        actor="delivery",
        **fields,  # type: ignore[arg-type]
    )


def test_it_puts_each_value_in_its_field() -> None:
    record = _built(request_id="req-1", data={"to": "pending"})

    assert record.pk is None
    assert (
        record.kind,
        record.request_id,
        record.event_uid,
        record.message_uid,
        record.recipient_id,
        record.actor,
        record.data,
    ) == ("message.pending", "req-1", EVENT, MESSAGE, "rcp-1", "delivery", {"to": "pending"})


def test_it_takes_the_bound_request_id_and_an_empty_object_by_default() -> None:
    with request_id_bound("bound-1"):
        record = _built()

    assert (record.request_id, record.data) == ("bound-1", {})


@pytest.mark.django_db
def test_it_stores_built_rows_with_the_database_clock_and_reads_them_back_equal() -> None:
    records = [_built(request_id=f"req-{n}", data={"n": n, "nested": [n, None]}) for n in (1, 2)]
    records.append(audit_build(kind="event.received"))  # no uids, no data
    rows_insert(AuditRecord, records)
    # `at`'s database default is one shared instance: it must serve a single save too.
    _built(request_id="req-1", data={"n": 1, "nested": [1, None]}).save(force_insert=True)

    stored = list(AuditRecord.objects.order_by("id"))
    assert [(r.kind, r.request_id, r.event_uid, r.message_uid, r.data) for r in stored] == [
        ("message.pending", "req-1", EVENT, MESSAGE, {"n": 1, "nested": [1, None]}),
        ("message.pending", "req-2", EVENT, MESSAGE, {"n": 2, "nested": [2, None]}),
        ("event.received", "", None, None, {}),
        ("message.pending", "req-1", EVENT, MESSAGE, {"n": 1, "nested": [1, None]}),
    ]
    assert all(r.at is not None and r.at.tzinfo is not None for r in stored)
