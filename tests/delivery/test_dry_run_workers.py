"""Dry run with several dispatchers at once: without a claim or a lease, the row locks held
by a dry-run batch's transaction (its lanes and messages) are what keep two dispatchers off
the same message."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from audit.models import AuditRecord
from delivery import dispatcher, outbox
from delivery.batch import BatchResult
from delivery.dispatcher import dispatch_batch
from delivery.models import Message, MessageState
from delivery.outbox import outbox_consume
from tests.delivery.conftest import wait_until

KEYS = 8
SEQUENCES = 5


def _recipient(key: int) -> dict[str, str]:
    return {"id": f"student-{key}", "email": f"student-{key}@example.org"}


def _assert_each_message_dry_run_once_in_key_order() -> None:
    messages = {m.uid: m for m in Message.objects.all()}
    assert {m.state for m in messages.values()} == {MessageState.DRY_RUN}
    # Apart from its creation, a message's only lineage row is its one dry-run transition
    # (or, decided at expansion, its only row at all).
    rows = list(
        AuditRecord.objects.filter(message_uid__in=messages)
        .exclude(kind="message.pending")
        .order_by("id")
    )
    assert {row.kind for row in rows} == {"message.dry_run"}
    assert sorted(row.message_uid for row in rows) == sorted(messages)
    lanes: dict[str, list[int | None]] = {}
    for row in rows:
        message = messages[row.message_uid]
        lanes.setdefault(message.ordering_key, []).append(message.sequence)
    assert all(sequences == sorted(sequences) for sequences in lanes.values())


@pytest.mark.slow
def test_several_workers_dry_run_each_message_once_in_key_order(workers, email_only, accept):
    for sequence in range(SEQUENCES, 0, -1):
        for key in range(KEYS):
            accept(sequence=sequence, ordering_key=f"key-{key}", recipient=_recipient(key))

    workers.start(3, DISPATCH_BATCH_SIZE="3")
    wait_until(
        lambda: Message.objects.filter(state=MessageState.DRY_RUN).count() == KEYS * SEQUENCES
    )
    workers.stop()

    _assert_each_message_dry_run_once_in_key_order()


@pytest.mark.postgres
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SKIP LOCKED is PostgreSQL's; on SQLite a batch holds the database's write lock",
)
@pytest.mark.django_db(transaction=True)
def test_a_second_dispatcher_skips_the_lanes_of_a_dry_run_batch_in_progress(
    email_only, accept, monkeypatch, pending_expansion
):
    for key in range(6):
        accept(ordering_key=f"key-{key}", recipient=_recipient(key))
    outbox_consume()
    inside, release = threading.Event(), threading.Event()
    locked: list[int] = []
    results: dict[str, BatchResult] = {}
    real_hydrate = dispatcher.hydrate

    def hydrate_then_wait(ids: list[int]) -> Any:
        # The first dispatcher stops inside its transaction, its lanes locked.
        if threading.current_thread().name == "first":
            locked.extend(ids)
            inside.set()
            release.wait(timeout=30)
        return real_hydrate(ids)

    def first() -> None:
        try:
            results["first"] = dispatch_batch(channel="email", limit=3)
        finally:
            connection.close()

    monkeypatch.setattr(dispatcher, "hydrate", hydrate_then_wait)
    thread = threading.Thread(target=first, name="first")
    thread.start()
    try:
        assert inside.wait(timeout=30)
        second = dispatch_batch(channel="email", limit=10)
        untouched = set(
            Message.objects.filter(pk__in=locked).values_list("state", flat=True).distinct()
        )
    finally:
        release.set()
        thread.join()

    assert len(locked) == 3
    assert second.states == {MessageState.DRY_RUN: 3}
    assert untouched == {MessageState.PENDING}
    assert results["first"].states == {MessageState.DRY_RUN: 3}
    _assert_each_message_dry_run_once_in_key_order()


@pytest.mark.postgres
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SKIP LOCKED is PostgreSQL's; on SQLite a batch holds the database's write lock",
)
@pytest.mark.django_db(transaction=True)
def test_expansion_leaves_the_lanes_of_a_dry_run_batch_in_progress_to_it(
    email_only, accept, monkeypatch
):
    decide_at_expansion = [False]
    monkeypatch.setattr(outbox, "dry_run_now", lambda: decide_at_expansion[0])
    accept(sequence=1, ordering_key="busy", recipient=_recipient(0))
    outbox_consume()  # pending: the batch below takes it
    decide_at_expansion[0] = True
    inside, release = threading.Event(), threading.Event()
    real_hydrate = dispatcher.hydrate

    def hydrate_then_wait(ids: list[int]) -> Any:
        inside.set()
        release.wait(timeout=30)
        return real_hydrate(ids)

    def batch() -> None:
        try:
            dispatch_batch(channel="email", limit=3)
        finally:
            connection.close()

    monkeypatch.setattr(dispatcher, "hydrate", hydrate_then_wait)
    thread = threading.Thread(target=batch)
    thread.start()
    try:
        assert inside.wait(timeout=30)
        # The batch's lane, which it has locked, and a free one: expansion does not wait for
        # the lock, it leaves the batch's lane alone and decides the other.
        behind = accept(sequence=2, ordering_key="busy", recipient=_recipient(0))
        free = accept(ordering_key="free", recipient=_recipient(1))
        outbox_consume()
        held_back = Message.objects.get(event=behind).state
        decided = Message.objects.get(event=free).state
    finally:
        release.set()
        thread.join()

    assert (held_back, decided) == (MessageState.PENDING, MessageState.DRY_RUN)
    dispatch_batch(channel="email")
    _assert_each_message_dry_run_once_in_key_order()
