"""Ordering is per key and channel: the key's messages on one channel keep their order, and
one channel's outage never holds another's (an email outage does not delay the SMS)."""

from __future__ import annotations

from delivery.models import Lane, Message
from tests.delivery.conftest import run_pump


def test_it_sends_the_sms_of_a_key_while_its_email_provider_is_down(
    routes, accept, live, smtp_server, sms_gateway
):
    smtp_server.reply_for("ada@example.org", 421)  # SMTP says "try later"
    first = accept(sequence=1, ordering_key="k")
    second = accept(sequence=2, ordering_key="k")

    run_pump()

    email_states = {
        m.sequence: m.state for m in Message.objects.filter(channel="email", ordering_key="k")
    }
    assert email_states == {1: "retrying", 2: "pending"}  # the email lane keeps its order
    sms = Message.objects.filter(channel="sms", ordering_key="k").order_by("dispatched_at")
    assert [(m.sequence, m.state) for m in sms] == [(1, "sent"), (2, "sent")]
    assert [r.form["Body"][:6] for r in sms_gateway.sends] == ["Seq 1:", "Seq 2:"]
    lanes = {lane.channel: lane.done_sequence for lane in Lane.objects.filter(ordering_key="k")}
    assert lanes == {"email": 0, "sms": 2}
    assert {first.pk, second.pk} == set(Message.objects.values_list("event_id", flat=True))


def test_it_settles_a_sequence_on_a_channel_that_got_no_message(
    routes, accept, live, smtp_server, sms_gateway
):
    # Event 1 has no phone, so no SMS: the SMS of event 2 must not wait for it.
    accept(sequence=1, ordering_key="k", recipient={"phone": ""})
    accept(sequence=2, ordering_key="k")

    run_pump()

    sms = Message.objects.get(channel="sms", ordering_key="k")
    assert (sms.sequence, sms.state) == (2, "sent")
    assert len(smtp_server.messages) == 2
