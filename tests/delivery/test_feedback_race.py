"""Receipts racing the send they report on, and each other (PostgreSQL, two threads, each
with its own connection): a receipt that arrives while the send's result is not committed
is kept and applied once the attempt is there; the same receipt twice at once is one row
and one move."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from audit.models import AuditRecord
from delivery.feedback import Feedback, feedback_apply_pending, feedback_receive
from delivery.models import Attempt, AttemptOutcome, Message, MessageState, ProviderReceipt
from delivery.outbox import outbox_consume
from delivery.transitions import Change, message_transition

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs concurrent transactions (PostgreSQL)"
)

SID = "SMrace0123456789"
DELIVERED = Feedback(provider="twilio", provider_message_id=SID, kind="delivered", source="t")


def dispatching(accept: Any) -> Message:
    event = accept()
    outbox_consume()
    Message.objects.filter(event=event).update(state=MessageState.DISPATCHING, lease_token=1)
    return Message.objects.select_related("event").get(event=event)


def record_sent(message: Message) -> None:
    """What the batch writes when the gateway accepted the message with sid SID."""
    attempt = Attempt(
        message=message,
        number=1,
        lease_token=1,
        started_at=timezone.now(),
        outcome=AttemptOutcome.SENT,
        provider="twilio",
        response_code="201",
        provider_message_id=SID,
    )
    moved = message_transition(
        changes=[Change(message=message, values={"provider_message_id": SID}, attempt=attempt)],
        state=MessageState.SENT,
        reason="provider accepted",
    )
    assert moved


def in_thread(target: Any) -> threading.Thread:
    def run() -> None:
        try:
            target()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_receipt_that_overtakes_the_commit_of_its_send_is_applied_afterwards(
    transactional_db, sms_only, accept
):
    message = dispatching(accept)
    written, answered = threading.Event(), threading.Event()
    outcome: list[str] = []

    def sender() -> None:
        with transaction.atomic():
            record_sent(message)
            written.set()
            # The gateway's callback arrives now, before this commit.
            assert answered.wait(10)

    def callback() -> None:
        assert written.wait(10)
        outcome.append(feedback_receive(feedback=DELIVERED))
        answered.set()

    threads = [in_thread(sender), in_thread(callback)]
    for thread in threads:
        thread.join(20)

    assert outcome == ["pending"]
    assert Message.objects.get(pk=message.pk).state == MessageState.SENT
    assert feedback_apply_pending() == 1
    assert Message.objects.get(pk=message.pk).state == MessageState.DELIVERED
    assert ProviderReceipt.objects.get().state == "applied"


def test_the_same_receipt_twice_at_once_is_one_row_and_one_move(transactional_db, sms_only, accept):
    message = dispatching(accept)
    record_sent(message)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def callback() -> None:
        barrier.wait(10)
        outcomes.append(feedback_receive(feedback=DELIVERED))

    threads = [in_thread(callback), in_thread(callback)]
    for thread in threads:
        thread.join(20)

    assert sorted(outcomes) == ["applied", "duplicate"]
    assert ProviderReceipt.objects.count() == 1
    lineage = AuditRecord.objects.filter(message_uid=message.uid, kind="message.delivered")
    assert lineage.count() == 1


def test_two_receipts_of_one_message_at_once_each_apply_from_the_state_the_other_left(
    transactional_db, sms_only, accept
):
    message = dispatching(accept)
    record_sent(message)
    failed = Feedback(provider="twilio", provider_message_id=SID, kind="failed", source="t")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def callback(feedback: Feedback) -> Any:
        def run() -> None:
            barrier.wait(10)
            outcomes.append(feedback_receive(feedback=feedback))

        return run

    threads = [in_thread(callback(DELIVERED)), in_thread(callback(failed))]
    for thread in threads:
        thread.join(20)

    # Whichever came first, the failure wins (delivered -> undelivered is an edge, the
    # reverse is not), and nothing is lost to the race.
    assert Message.objects.get(pk=message.pk).state == MessageState.UNDELIVERED
    assert len(outcomes) == 2
    assert ProviderReceipt.objects.count() == 2
