"""The intake's statement on PostgreSQL runs prepared through the driver's cursor
(events.services._insert_pg_row): parameter types under server-side binding, Django's error
mapping, and the enclosing transaction are what Django's cursor gave before."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import DataError, IntegrityError, connection, transaction
from django.db.transaction import TransactionManagementError

from events import services
from events.models import Event, EventStatus, OutboxState
from tests.delivery.conftest import make_payload

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the prepared statement is PostgreSQL's"
)

ALICE = "sa:alice"


def accept(key: str, **overrides: object) -> services.AcceptResult:
    return services.event_accept(
        caller=ALICE, payload=make_payload(**overrides), idempotency_key=key, request_id="req-s"
    )


def test_it_prepares_the_statement_on_the_connection(db):
    accept("p-1")
    accept("p-2")

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s",
            ["WITH ev AS (INSERT INTO%"],
        )
        statements = [row[0] for row in cursor.fetchall()]
    assert len(statements) == 1
    assert "$1" in statements[0]


def test_it_stores_every_parameter_type_as_given(db):
    occurred = datetime(2026, 11, 21, 20, 0, 0, 123456, tzinfo=timezone(timedelta(hours=-5)))
    data = {
        "quote": 'it\'s "quoted" \\ back',
        "text": "naïve \u2013 日本",
        "nested": [1, 2.5, None],
    }
    recipient = {"id": "r-ü", "email": "a@example.org", "phone": "+12025550123", "locale": "pt-BR"}
    big = accept("t-big", sequence=2**53, occurred_at=occurred, data=data, recipient=recipient)
    small = accept("t-small", sequence=7, expires_at="2030-01-01T00:00:00Z")
    none = accept("t-none")

    stored = Event.objects.get(pk=big.event.pk)
    assert stored.uid == big.event.uid
    assert stored.sequence == 2**53
    assert stored.occurred_at == occurred
    assert stored.data == data
    assert stored.recipient == {**make_payload()["recipient"], **recipient}
    assert big.event.received_at == stored.received_at
    assert big.event.received_at.tzinfo is not None
    assert big.event.outbox_state == OutboxState.PENDING
    assert Event.objects.get(pk=small.event.pk).expires_at == datetime(2030, 1, 1, tzinfo=UTC)
    stored = Event.objects.get(pk=none.event.pk)
    assert (stored.sequence, stored.occurred_at, stored.expires_at) == (None, None, None)


def test_it_raises_djangos_errors(db):
    first = accept("e-1").event
    event = Event(
        uid=first.uid,
        caller=ALICE,
        event_type="deadline_soon",
        idempotency_key="e-2",
        payload_hash="0" * 64,
        ordering_key="k",
        recipient_id="r",
        recipient={"id": "r"},
        request_id="req-e",
    )
    with pytest.raises(IntegrityError), transaction.atomic():  # a unique index other than the key
        services._insert_with_lineage_pg(event, {})
    event.uid, event.caller = uuid.uuid4(), "x" * 301
    with pytest.raises(DataError), transaction.atomic():
        services._insert_with_lineage_pg(event, {})
    assert services.event_accept(
        caller=ALICE, payload=make_payload(), idempotency_key="e-3", request_id="req-e"
    )


def test_it_stores_nothing_when_the_enclosing_transaction_rolls_back(
    db, django_capture_on_commit_callbacks
):
    class Abandon(Exception):
        pass

    def accept_then_abandon() -> None:
        with transaction.atomic():
            accept("r-1")
            raise Abandon

    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(Abandon):
        accept_then_abandon()
    assert callbacks == []
    assert not Event.objects.filter(idempotency_key="r-1").exists()

    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        accept("r-2")
    assert len(callbacks) == 1
    assert Event.objects.filter(idempotency_key="r-2").exists()


def test_it_refuses_to_run_in_a_transaction_marked_for_rollback(db):
    with transaction.atomic():
        transaction.set_rollback(True)
        with pytest.raises(TransactionManagementError):
            accept("b-1")


@pytest.mark.django_db(transaction=True)
def test_it_stores_the_duplicate_when_the_winner_rolls_back():
    """A second insert of the key waits on the first's uncommitted row (ON CONFLICT); when
    that transaction rolls back, the second is the one stored, not a duplicate."""
    first_inserted = threading.Event()
    results: dict[str, services.AcceptResult] = {}
    errors: list[BaseException] = []

    def winner() -> None:
        try:
            with transaction.atomic():
                results["winner"] = accept("w-1")
                first_inserted.set()
                _wait_for_a_lock_waiter()
                transaction.set_rollback(True)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            first_inserted.set()
            connection.close()

    def second() -> None:
        try:
            first_inserted.wait(10)
            results["second"] = accept("w-1")
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=winner), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert results["second"].duplicate is False
    stored = Event.objects.get(idempotency_key="w-1", status=EventStatus.ACCEPTED)
    assert stored.uid == results["second"].event.uid != results["winner"].event.uid


def _wait_for_a_lock_waiter() -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            # Activity is read once per transaction unless the snapshot is cleared.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
        time.sleep(0.01)
    raise AssertionError("the second insert never waited for the first")
