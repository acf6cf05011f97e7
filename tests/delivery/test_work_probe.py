"""What a pass has to do, read in one statement (delivery.claims.work_probe): each answer
turns True as soon as its step has something to take, and an idle ticker pass runs only the
probe and the sealer."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.db.models.functions import Now
from django.test.utils import CaptureQueriesContext

from delivery.claims import Work, claim, work_probe
from delivery.liveness import Liveness
from delivery.models import Message, WorkerLease
from delivery.outbox import outbox_consume
from delivery.tasks import TICK_IDLE_SLEEP, tick_pass
from tests.delivery.conftest import run_pump

IDLE = Work(outbox=False, due=frozenset(), expiring=False, recoverable=False)


def test_it_finds_nothing_to_do_once_everything_is_done(routes, accept):
    accept()
    run_pump()

    assert work_probe() == IDLE


def test_it_sees_an_event_waiting_in_the_outbox(routes, accept):
    accept()

    assert work_probe().outbox


def test_it_sees_a_waiting_message_once_its_attempt_is_due(email_only, accept, pending_expansion):
    accept()
    outbox_consume()
    assert work_probe() == Work(
        outbox=False, due=frozenset({"email"}), expiring=False, recoverable=False
    )

    Message.objects.update(next_attempt_at=Now() + timedelta(minutes=5))

    assert not work_probe().due


def test_it_sees_a_waiting_message_past_its_expiry(email_only, accept, pending_expansion):
    accept()
    outbox_consume()
    Message.objects.update(
        next_attempt_at=Now() + timedelta(minutes=5), expires_at=Now() - timedelta(seconds=1)
    )

    assert work_probe().expiring


def test_it_sees_a_claim_whose_liveness_ran_out(email_only, accept, pending_expansion):
    accept()
    outbox_consume()
    liveness = Liveness()
    claim(channel="email", limit=1, paused=False, liveness=liveness)
    assert not work_probe().recoverable  # its worker is alive

    WorkerLease.objects.filter(name=liveness.name).update(until=Now() - timedelta(seconds=1))

    assert work_probe().recoverable


def test_it_sees_a_liveness_record_that_ran_out_with_no_claim(db):
    live = Liveness()
    live.ensure()
    WorkerLease.objects.filter(name=live.name).update(until=Now() - timedelta(seconds=1))

    assert work_probe() == Work(outbox=False, due=frozenset(), expiring=False, recoverable=True)


def test_an_idle_ticker_pass_reads_the_delivery_tables_once(routes, accept):
    accept()
    run_pump()
    tick_pass(budget_seconds=1.0)  # warm-up: lock rows, compiled statements

    with CaptureQueriesContext(connection) as captured:
        assert tick_pass(budget_seconds=1.0) == TICK_IDLE_SLEEP

    delivery = [q["sql"] for q in captured if "delivery_" in q["sql"] or "events_" in q["sql"]]
    assert len(delivery) == 1, delivery
