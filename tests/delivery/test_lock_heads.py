"""`lock_heads` runs a statement compiled once per process: it must still refuse to run
outside a transaction (where its locks would end with the statement), as Django's compiler
does, and still see each call's outbox watermark."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError

from delivery.claims import lock_heads
from delivery.models import WAITING_STATES
from delivery.outbox import outbox_expand


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite has no row locks")
@pytest.mark.usefixtures("transactional_db")
def test_it_refuses_to_lock_outside_a_transaction(email_only, accept, pending_expansion):
    accept(ordering_key="k-1")
    outbox_expand()
    with transaction.atomic():
        assert len(lock_heads(channel="email", states=WAITING_STATES, limit=5)) == 1

    with pytest.raises(TransactionManagementError):
        lock_heads(channel="email", states=WAITING_STATES, limit=5)


def test_it_returns_each_head_with_its_lane_and_gap_note(
    email_only, accept, settings, pending_expansion
):
    settings.ORDERING_GAP_WAIT = 0  # a missing predecessor is waited for no longer
    plain, in_order, gapped = (
        accept(ordering_key="k-1"),
        accept(ordering_key="k-2", sequence=1),
        accept(ordering_key="k-3", sequence=2),
    )
    accept(ordering_key="k-1")  # behind the first of its lane: not a head
    outbox_expand()

    with transaction.atomic():
        heads = lock_heads(channel="email", states=WAITING_STATES, limit=10)
        again = lock_heads(channel="email", states=WAITING_STATES, limit=10)

    expected = {e.messages.get() for e in (plain, in_order, gapped)}
    assert {(h.pk, h.lane_id) for h in heads.values()} == {(m.pk, m.lane_id) for m in expected}
    gap_of = {m.event_id: heads[m.pk].gap for m in expected}
    assert gap_of == {plain.pk: False, in_order.pk: False, gapped.pk: True}
    assert set(again) == set(heads)
