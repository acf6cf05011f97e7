"""A provider that is down is detected once: the failing send opens its circuit, the other
messages wait without spending attempts, one probe at a time tests the provider, and when it
answers again every held message goes out within seconds (not after its retry backoff)."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from django.utils import timezone

from delivery.models import Attempt, AttemptOutcome, Message, ProviderCircuit
from tests.delivery.conftest import run_pump

RECIPIENTS = [f"student-{n}@example.org" for n in range(5)]


@pytest.fixture
def smtp_down(settings, smtp_server):
    """SMTP configured, but at a port nobody listens on (the server is "down")."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    settings.EMAIL_PORT = closed
    settings.PROVIDER_PROBE_SECONDS = 60  # a test that wants probes sets it shorter
    return smtp_server


def test_it_detects_an_outage_once_and_spends_no_attempts_while_it_lasts(
    email_only, accept, live, smtp_down
):
    for n, address in enumerate(RECIPIENTS):
        accept(recipient={"id": f"student-{n}", "email": address})

    run_pump()

    attempts = sorted(Message.objects.values_list("state", "attempts"))
    assert attempts == [("pending", 0)] * 4 + [("retrying", 1)]
    assert ProviderCircuit.objects.filter(provider="email").exists()

    run_pump()  # the circuit is open: nothing is claimed, no attempt spent
    assert sorted(Message.objects.values_list("attempts", flat=True)) == [0, 0, 0, 0, 1]


def test_it_probes_and_releases_everything_at_once_on_recovery(
    email_only, accept, live, smtp_down, settings
):
    for n, address in enumerate(RECIPIENTS):
        accept(recipient={"id": f"student-{n}", "email": address})
    run_pump()  # found down: one attempt spent, the circuit open for a minute
    first = Message.objects.get(state="retrying")
    assert first.next_attempt_at > timezone.now()  # its backoff

    settings.EMAIL_PORT = smtp_down.port  # the server is back
    # The probe time has come: the circuit's, and that of the messages held until it (a
    # second ago: SQLite's Now() has millisecond precision, so "now" stored with
    # microseconds is not yet due for the rest of that millisecond).
    past = timezone.now() - timedelta(seconds=1)
    ProviderCircuit.objects.update(open_until=past)
    Message.objects.filter(state="pending").update(next_attempt_at=past)
    run_pump()  # the probe succeeds, the circuit closes, the backlog is due at once
    run_pump()

    assert set(Message.objects.values_list("state", flat=True)) == {"sent"}
    assert not ProviderCircuit.objects.exists()
    assert len(smtp_down.messages) == 5
    # Only the send that found the outage failed; the retried one did not wait its backoff.
    assert Attempt.objects.filter(outcome=AttemptOutcome.TRANSIENT).count() == 1
    assert sorted(Message.objects.values_list("attempts", flat=True)) == [1, 1, 1, 1, 2]


def test_it_does_not_take_one_mailbox_s_temporary_refusal_for_an_outage(
    email_only, accept, live, smtp_server
):
    smtp_server.reply_for("student-0@example.org", 451)  # that mailbox only, "try later"
    for n, address in enumerate(RECIPIENTS):
        accept(recipient={"id": f"student-{n}", "email": address})

    run_pump()

    states = dict(Message.objects.values_list("to_address", "state"))
    assert states.pop("student-0@example.org") == "retrying"
    assert set(states.values()) == {"sent"}
    assert not ProviderCircuit.objects.exists()
