"""A worker killed with SIGKILL in the middle of a send loses nothing: once its lease runs
out, or within seconds its liveness record, another worker sends what it held, with at most
one duplicate for the crash; a worker paused past its liveness sends nothing more when it
resumes."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from django.utils import timezone

from delivery.claims import claim, messages_recover_expired_leases
from delivery.models import Attempt, Lane, Message
from delivery.outbox import outbox_consume
from delivery.transitions import Change, message_transition
from tests.delivery.conftest import set_flag, wait_until
from tests.support.smtp import message_id_of


class GatedSmtp:
    """An SMTP server that records each message when its data arrives and then, while the
    gate is closed, holds back the 250: a client killed meanwhile never learns the outcome."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.gate = threading.Event()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(message_id_of(envelope))
        await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, 30)
        return "250 OK"


@pytest.fixture
def gated_smtp():
    server = GatedSmtp()
    server._controller.start()
    try:
        yield server
    finally:
        server.gate.set()
        server._controller.stop()


@pytest.fixture
def four_live(email_only, accept) -> None:
    """Four emails due, sends on: one worker claims all four in one batch."""
    set_flag("DISABLE_SEND", False)
    set_flag("RATE_LIMIT_ENABLED", False)
    for n in range(4):
        accept(recipient={"id": f"student-{n}", "email": f"student-{n}@example.org"})


@pytest.mark.slow
def test_a_killed_worker_loses_nothing_and_duplicates_at_most_one(workers, four_live, gated_smtp):
    env = {"EMAIL_URL": f"smtp://127.0.0.1:{gated_smtp.port}", "DISPATCH_LEASE_SECONDS": "5"}

    (doomed,) = workers.start(1, **env)
    wait_until(lambda: gated_smtp.received)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    gated_smtp.gate.set()
    in_flight = gated_smtp.received[0]
    assert Message.objects.filter(state="dispatching").count() == 4

    workers.start(1, **env)
    wait_until(lambda: Message.objects.filter(state="sent").count() == 4, timeout=20)

    copies = Counter(gated_smtp.received)
    assert set(copies) == {f"<{m.uid}@localhost>" for m in Message.objects.all()}, (
        "every message reached the server"
    )
    assert sum(n - 1 for n in copies.values()) <= 1, "at most one duplicate for one crash"
    assert copies[in_flight] == 2  # the send the crash interrupted, counted
    abandoned = Attempt.objects.filter(outcome="abandoned")
    assert abandoned.count() == 4  # every claim the dead worker held is accounted for
    assert f"<{abandoned.first().message.uid}@localhost>" in copies


LIVENESS = {"DISPATCH_LEASE_SECONDS": "60", "WORKER_LIVENESS_SECONDS": "3"}


@pytest.mark.slow
def test_a_killed_worker_claims_are_sent_within_seconds_not_at_its_lease_end(
    workers, four_live, gated_smtp
):
    env = {"EMAIL_URL": f"smtp://127.0.0.1:{gated_smtp.port}", **LIVENESS}
    (doomed,) = workers.start(1, **env)
    wait_until(lambda: gated_smtp.received)
    workers.start(1, **env)  # the survivor, idle: the doomed worker holds all four

    doomed.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    doomed.wait()
    gated_smtp.gate.set()
    wait_until(lambda: Message.objects.filter(state="sent").count() == 4, timeout=40, every=0.02)
    delay = time.monotonic() - killed

    assert delay < 20, f"sent {delay:.1f} s after the kill: the 60 s lease was waited out"
    copies = Counter(gated_smtp.received)
    assert sum(n - 1 for n in copies.values()) <= 1, "at most one duplicate for one crash"
    assert Attempt.objects.filter(outcome="abandoned").count() == 4


@pytest.mark.slow
def test_a_worker_paused_past_its_liveness_sends_nothing_more_when_it_resumes(
    workers, four_live, gated_smtp
):
    env = {"EMAIL_URL": f"smtp://127.0.0.1:{gated_smtp.port}", **LIVENESS}
    (paused,) = workers.start(1, **env)
    wait_until(lambda: gated_smtp.received)
    paused.send_signal(signal.SIGSTOP)
    try:
        gated_smtp.gate.set()
        workers.start(1, **env)
        wait_until(lambda: Message.objects.filter(state="sent").count() == 4, timeout=40)
    finally:
        paused.send_signal(signal.SIGCONT)
    in_flight = Message.objects.get(uid=gated_smtp.received[0][1:].split("@")[0])
    # It wakes up, reads the 250 of the send it was in, and records it: stale, fenced out.
    wait_until(lambda: Attempt.objects.filter(message=in_flight, stale=True).exists())
    time.sleep(1.0)  # time to send the rest of its batch, if it still would

    copies = Counter(gated_smtp.received)
    assert sum(n - 1 for n in copies.values()) == 1, "only the send it was in went twice"
    assert copies[f"<{in_flight.uid}@localhost>"] == 2
    assert set(Message.objects.values_list("state", flat=True)) == {"sent"}


def test_a_superseded_worker_records_only_a_stale_attempt(email_only, accept, pending_expansion):
    accept()
    outbox_consume()
    (slow,) = claim(channel="email", limit=1, paused=False)
    expired = timezone.now() - timedelta(seconds=1)
    Message.objects.filter(pk=slow.pk).update(lease_until=expired)
    Lane.objects.update(busy_until=expired)
    assert messages_recover_expired_leases() == 1

    # The slow worker comes back and reports its send under the claim it held.
    late = Attempt(
        message=slow,
        number=1,
        lease_token=slow.lease_token,
        started_at=timezone.now(),
        outcome="sent",
        provider="email",
        response_code="250",
    )
    moved = message_transition(
        changes=[Change(message=slow, values={"attempts": 1}, attempt=late)],
        state="sent",
        reason="provider accepted",
    )

    assert moved == []
    assert Message.objects.get(pk=slow.pk).state == "retrying"
    assert sorted(Attempt.objects.filter(message=slow).values_list("outcome", "stale")) == [
        ("abandoned", False),
        ("sent", True),
    ]
