"""Worker liveness (delivery/liveness.py): a claim whose worker's liveness record ran out is
recovered before its lease ends; a live worker's claims are left alone, its heartbeat keeps
a long send alive, and a record that ran out is never revived."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.db.models.functions import Now

from delivery.claims import claim, messages_recover_expired_leases
from delivery.dispatcher import dispatch_batch
from delivery.liveness import Liveness
from delivery.models import Attempt, Lane, Message, WorkerLease
from delivery.outbox import outbox_consume
from tests.delivery.conftest import set_flag


@pytest.fixture
def waiting(email_only, accept, pending_expansion) -> None:
    """One email message due (pending: expansion decides none in this module)."""
    accept()
    outbox_consume()


def _claim(liveness: Liveness | None = None) -> Message:
    (claimed,) = claim(channel="email", limit=1, paused=False, liveness=liveness)
    return claimed


def _run_out(liveness: Liveness) -> None:
    """What the database sees once the worker stopped renewing: the record's time is up."""
    WorkerLease.objects.filter(name=liveness.name).update(until=Now() - timedelta(seconds=1))
    liveness._renewed -= liveness.seconds  # and the worker's own clock agrees


def test_it_recovers_a_claim_whose_worker_liveness_ran_out(waiting):
    with Liveness() as liveness:
        claimed = _claim(liveness)
        assert Message.objects.get(pk=claimed.pk).claimed_by == liveness.name
        assert messages_recover_expired_leases() == 0, "a live worker keeps its claims"

        _run_out(liveness)
        assert messages_recover_expired_leases() == 1

    message = Message.objects.get(pk=claimed.pk)
    assert message.state == "retrying"
    assert message.lease_until is None
    assert Lane.objects.get(pk=message.lane_id).busy_until is None, "its lane is free at once"
    assert Attempt.objects.get(message=message).outcome == "abandoned"
    assert not WorkerLease.objects.filter(name=liveness.name).exists(), "purged"
    again = _claim()
    assert again.pk == claimed.pk
    assert again.claimed_by == ""


def test_it_recovers_a_claim_whose_liveness_record_is_gone(waiting):
    with Liveness() as liveness:
        _claim(liveness)
    # The run ended (record deleted) without recording a result, e.g. its result write failed.
    assert messages_recover_expired_leases() == 1


def test_it_leaves_a_claim_made_without_liveness_to_its_lease(waiting):
    with Liveness() as liveness:
        _claim(liveness)
        _run_out(liveness)
        assert messages_recover_expired_leases() == 1
    # Claimed again by a worker without a record: the dead worker's name must not stick.
    _claim()
    assert messages_recover_expired_leases() == 0


def test_it_never_revives_a_record_that_ran_out(waiting):
    with Liveness() as liveness:
        _claim(liveness)
        assert liveness.alive()
        _run_out(liveness)
        assert not liveness.alive()
        assert liveness.lost
        until = WorkerLease.objects.get(name=liveness.name).until
        assert not liveness.alive()
        assert WorkerLease.objects.get(name=liveness.name).until == until, "not renewed"


def test_it_sends_nothing_once_its_liveness_is_lost(email_only, accept, smtp_server):
    set_flag("DISABLE_SEND", False)
    set_flag("RATE_LIMIT_ENABLED", False)
    for n in range(3):
        accept(recipient={"id": f"student-{n}", "email": f"student-{n}@example.org"})
    outbox_consume()
    with Liveness() as liveness:
        liveness.lost = True  # e.g. paused past its record; the claims may be another's now
        result = dispatch_batch(channel="email", liveness=liveness)

    assert result.claimed == 3
    assert smtp_server.messages == []
    assert sorted(Message.objects.values_list("state", "attempts")) == [("pending", 0)] * 3


@pytest.mark.django_db(transaction=True)
def test_its_heartbeat_keeps_a_long_send_alive(waiting):
    with Liveness(seconds=1.0) as liveness:
        with transaction.atomic():
            _claim(liveness)
        # The dispatching thread is busy for three record lifetimes (a slow send).
        time.sleep(3.0)
        assert messages_recover_expired_leases() == 0
        assert liveness.alive()
    assert messages_recover_expired_leases() == 1, "once the run is over, its claim is not"
