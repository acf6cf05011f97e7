"""Requeue of messages blocked by their template's state, once the template is fixed
(`delivery.dlq.message_requeue_blocked`): the edge blocked -> pending, its refusals, and the
message's place in its lane."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditRecord
from delivery import dlq
from delivery.models import Message
from delivery.outbox import outbox_consume
from templates.services import template_set_enabled, template_set_whitelisted
from tests.delivery.conftest import run_pump


def _subjects(smtp_server) -> list[str]:
    return [m.message["Subject"].split(":")[0] for m in smtp_server.messages_to("ada@example.org")]


@pytest.fixture
def blocked(email_only, accept, live, smtp_server):
    """A message of key "k" (sequence 1) blocked because its template was disabled."""
    template_set_enabled(template=email_only, value=False, actor="setup")
    event = accept(sequence=1, ordering_key="k")
    run_pump()
    message = Message.objects.get(event=event)
    assert (message.state, message.last_error) == ("blocked", "template disabled")
    return message


def test_it_requeues_once_the_template_is_enabled_and_sends_it(blocked, email_only, smtp_server):
    template_set_enabled(template=email_only, value=True, actor="olivia")

    result = dlq.message_requeue_blocked(message_ids=[blocked.pk], actor="olivia")

    assert (result.moved, result.refused) == (1, {})
    blocked.refresh_from_db()
    assert (blocked.state, blocked.attempts, blocked.last_error) == ("pending", 0, "")
    row = AuditRecord.objects.filter(message_uid=blocked.uid, kind="message.pending").latest("id")
    assert (row.actor, row.data["from"], row.data["reason"]) == (
        "olivia",
        "blocked",
        "requeued after its template was fixed",
    )
    run_pump()
    assert Message.objects.get(pk=blocked.pk).state == "sent"
    assert _subjects(smtp_server) == ["Seq 1"]


def test_it_refuses_while_the_template_is_still_disabled(blocked, smtp_server):
    result = dlq.message_requeue_blocked(message_ids=[blocked.pk], actor="olivia")

    assert (result.moved, result.refused) == (0, {dlq.STILL_DISABLED: [str(blocked.uid)]})
    assert Message.objects.get(pk=blocked.pk).state == "blocked"
    assert not AuditRecord.objects.filter(message_uid=blocked.uid, data__from="blocked").exists()


def test_it_refuses_while_the_template_is_enabled_but_not_whitelisted(blocked, email_only):
    template_set_whitelisted(template=email_only, value=False, actor="olivia")
    template_set_enabled(template=email_only, value=True, actor="olivia")

    result = dlq.message_requeue_blocked(message_ids=[blocked.pk], actor="olivia")

    assert result.refused == {dlq.STILL_NOT_WHITELISTED: [str(blocked.uid)]}
    assert Message.objects.get(pk=blocked.pk).state == "blocked"


def test_it_never_requeues_an_expired_message(blocked, email_only, smtp_server):
    Message.objects.filter(pk=blocked.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    template_set_enabled(template=email_only, value=True, actor="olivia")

    result = dlq.message_requeue_blocked(message_ids=[blocked.pk], actor="olivia")

    assert result.refused == {dlq.EXPIRED: [str(blocked.uid)]}
    run_pump()
    assert Message.objects.get(pk=blocked.pk).state == "blocked"
    assert smtp_server.messages_to("ada@example.org") == []


def test_it_refuses_other_gates_and_other_states(blocked, email_only, accept):
    template_set_enabled(template=email_only, value=True, actor="olivia")
    promo_event, sent_event = accept(), accept()
    outbox_consume()
    promo = Message.objects.get(event=promo_event)
    Message.objects.filter(pk=promo.pk).update(state="blocked", last_error="PROMO_SENDS is off")
    run_pump()
    sent = Message.objects.get(event=sent_event, state="sent")

    result = dlq.message_requeue_blocked(message_ids=[promo.pk, sent.pk], actor="olivia")

    assert result.moved == 0
    assert result.refused == {
        dlq.NOT_BY_TEMPLATE: [str(promo.uid)],
        dlq.NOT_BLOCKED: [str(sent.uid)],
    }
    assert Message.objects.get(pk=promo.pk).state == "blocked"


def test_a_requeued_message_goes_before_the_later_messages_of_its_key(
    blocked, email_only, accept, smtp_server
):
    template_set_enabled(template=email_only, value=True, actor="olivia")
    later = accept(sequence=2, ordering_key="k")
    outbox_consume()
    assert Message.objects.get(event=later).state == "pending"

    assert dlq.message_requeue_blocked(message_ids=[blocked.pk], actor="olivia").moved == 1
    run_pump()

    assert _subjects(smtp_server) == ["Seq 1", "Seq 2"]
