"""Per-key ordering in one process: sequence order, gap waits, dead messages releasing their
key, and never two messages of a key in flight."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from audit.models import AuditRecord
from delivery.claims import claim, messages_recover_expired_leases
from delivery.dispatcher import dispatch_due
from delivery.models import Lane, Message, MessageState
from delivery.outbox import outbox_consume
from events.models import Event
from tests.delivery.conftest import run_pump


def _seq_3_waiting_past_its_gap_wait(accept):
    """Seq 1 sent, seq 3 waiting for seq 2 with its gap wait over; returns seq 3's event."""
    accept(sequence=1, ordering_key="k")
    third = accept(sequence=3, ordering_key="k")
    run_pump()
    Message.objects.filter(event=third).update(gap_until=timezone.now() - timedelta(seconds=1))
    return third


def _subjects(smtp_server):
    return [m.message["Subject"].split(":")[0] for m in smtp_server.messages]


def test_it_sends_sequences_posted_in_reverse_in_sequence_order(
    email_only, accept, live, smtp_server
):
    for n in (5, 4, 3, 2, 1):
        accept(sequence=n, ordering_key="k")

    run_pump()

    assert _subjects(smtp_server) == ["Seq 1", "Seq 2", "Seq 3", "Seq 4", "Seq 5"]
    dispatched = list(Message.objects.order_by("sequence").values_list("dispatched_at", flat=True))
    assert dispatched == sorted(dispatched)


def test_it_sends_in_receipt_order_without_sequences(email_only, accept, live, smtp_server):
    for n in (1, 2, 3):
        accept(ordering_key="k", data={"scholarship": "S", "deadline": "D", "seq": n})

    run_pump()

    assert _subjects(smtp_server) == ["Seq 1", "Seq 2", "Seq 3"]


def test_it_waits_for_a_missing_predecessor_then_records_the_gap(
    email_only, accept, live, smtp_server, settings
):
    settings.ORDERING_GAP_WAIT = 10
    accept(sequence=1, ordering_key="k")
    third = accept(sequence=3, ordering_key="k")

    run_pump()

    assert _subjects(smtp_server) == ["Seq 1"]
    waiting = Message.objects.get(event=third)
    assert waiting.state == "pending"
    assert waiting.gap_until >= waiting.received_at + timedelta(seconds=10)

    Message.objects.filter(pk=waiting.pk).update(gap_until=timezone.now() - timedelta(seconds=1))
    run_pump()

    assert _subjects(smtp_server) == ["Seq 1", "Seq 3"]
    claim_row = AuditRecord.objects.get(message_uid=waiting.uid, kind="message.dispatching")
    assert claim_row.data["ordering_gap"] == {"missing_sequence": 2, "waited_seconds": 10}


def test_an_outbox_backlog_does_not_use_up_the_gap_wait(
    email_only, accept, live, smtp_server, settings
):
    """Events received long before the dispatcher expands them (a backlog) still give a
    late predecessor the whole wait: the clock starts when the message enters its lane."""
    settings.ORDERING_GAP_WAIT = 10
    accept(sequence=1, ordering_key="k")
    third = accept(sequence=3, ordering_key="k")
    Event.objects.filter(pk=third.pk).update(received_at=timezone.now() - timedelta(minutes=5))

    run_pump()

    assert _subjects(smtp_server) == ["Seq 1"]
    waiting = Message.objects.get(event=third)
    assert waiting.state == "pending"
    assert waiting.gap_until > timezone.now()


def test_it_sends_a_late_predecessor_without_waiting_again(email_only, accept, live, smtp_server):
    _seq_3_waiting_past_its_gap_wait(accept)
    run_pump()

    accept(sequence=2, ordering_key="k")
    accept(sequence=4, ordering_key="k")
    run_pump()

    assert _subjects(smtp_server) == ["Seq 1", "Seq 3", "Seq 2", "Seq 4"]


def test_it_does_not_wait_for_a_predecessor_that_made_no_message(
    email_only, accept, live, smtp_server
):
    accept(sequence=1, ordering_key="k", recipient={"email": None})
    accept(sequence=2, ordering_key="k")

    run_pump()

    assert _subjects(smtp_server) == ["Seq 2"]
    assert Lane.objects.get(ordering_key="k").done_sequence == 2


def test_it_holds_the_key_while_the_head_retries(email_only, accept, live, smtp_server):
    smtp_server.reply_for("first@example.org", 421)
    first = accept(sequence=1, ordering_key="k", recipient={"email": "first@example.org"})
    second = accept(sequence=2, ordering_key="k")

    run_pump()

    assert Message.objects.get(event=first).state == "retrying"
    assert Message.objects.get(event=second).state == "pending"
    assert smtp_server.messages == []

    smtp_server.clear_reply("first@example.org")
    Message.objects.filter(event=first).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    run_pump()

    assert _subjects(smtp_server) == ["Seq 1", "Seq 2"]


def test_it_releases_the_key_when_the_head_is_dead(email_only, accept, live, smtp_server):
    smtp_server.reply_for("first@example.org", 554)
    first = accept(sequence=1, ordering_key="k", recipient={"email": "first@example.org"})
    accept(sequence=2, ordering_key="k")

    run_pump()

    assert Message.objects.get(event=first).state == "dead"
    assert _subjects(smtp_server) == ["Seq 2"]


def test_it_never_claims_two_messages_of_a_key(email_only, accept):
    second = accept(sequence=2, ordering_key="k")
    third = accept(sequence=3, ordering_key="k")
    outbox_consume()
    Message.objects.update(gap_until=timezone.now() - timedelta(seconds=1))

    claimed = claim(channel="email", limit=10, paused=False)

    assert [m.event_id for m in claimed] == [second.pk]
    # A late, lower sequence arrives while the key is in flight: it waits too.
    accept(sequence=1, ordering_key="k")
    outbox_consume()
    assert claim(channel="email", limit=10, paused=False) == []
    assert Message.objects.get(event=third).state == MessageState.PENDING
    assert Lane.objects.get(ordering_key="k").busy_until is not None


def test_it_orders_keys_of_different_callers_independently(email_only, accept, live, smtp_server):
    accept(sequence=2, ordering_key="k", caller="sa:alice")
    accept(sequence=1, ordering_key="k", caller="sa:bob")

    run_pump()

    # Alice's sequence 2 waits for her own sequence 1; Bob's is free to go.
    assert _subjects(smtp_server) == ["Seq 1"]
    assert Lane.objects.filter(ordering_key="k").count() == 2


def test_recovering_a_lost_claim_keeps_a_newer_claim_of_the_key_in_flight(email_only, accept):
    lost = accept(sequence=2, ordering_key="k")
    outbox_consume()
    # Over (a second ago: SQLite's Now() has milliseconds, so "now" in microseconds can
    # still be ahead of it when the claim runs in the same millisecond).
    Message.objects.filter(event=lost).update(gap_until=timezone.now() - timedelta(seconds=1))
    (claimed,) = claim(channel="email", limit=10, paused=False)
    # Its worker died; the lease ran out, and a late sequence 1 was claimed meanwhile.
    Message.objects.filter(pk=claimed.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    Lane.objects.update(busy_until=timezone.now() - timedelta(seconds=1))
    accept(sequence=1, ordering_key="k")
    outbox_consume()
    (late,) = claim(channel="email", limit=10, paused=False)

    assert messages_recover_expired_leases() == 1

    assert Message.objects.get(pk=claimed.pk).state == "retrying"
    assert Message.objects.get(pk=late.pk).state == "dispatching"
    assert Lane.objects.get(ordering_key="k").busy_until is not None
    assert claim(channel="email", limit=10, paused=False) == []


def test_a_predecessor_still_in_the_outbox_goes_first_even_after_the_gap_wait(
    email_only, accept, live, smtp_server, settings
):
    """The gap wait ends only when no event received within it is still in the outbox: a
    predecessor received in time but not yet expanded (a backlog, an expansion transaction
    not yet committed) is not overtaken."""
    settings.ORDERING_GAP_WAIT = 10
    _seq_3_waiting_past_its_gap_wait(accept)
    accept(sequence=2, ordering_key="k")  # received in time; still in the outbox

    dispatch_due(budget_seconds=5)  # dispatches without expanding the outbox
    assert _subjects(smtp_server) == ["Seq 1"]

    run_pump()
    assert _subjects(smtp_server) == ["Seq 1", "Seq 2", "Seq 3"]


def test_an_event_received_after_the_gap_wait_does_not_hold_the_key(
    email_only, accept, live, smtp_server, settings
):
    settings.ORDERING_GAP_WAIT = 10
    third = _seq_3_waiting_past_its_gap_wait(accept)
    late = accept(sequence=2, ordering_key="k")
    received = Message.objects.get(event=third).received_at + timedelta(seconds=11)
    Event.objects.filter(pk=late.pk).update(received_at=received)

    dispatch_due(budget_seconds=5)

    assert _subjects(smtp_server) == ["Seq 1", "Seq 3"]  # went ahead, the gap recorded
