"""The dead-letter queue: requeue, discard, retention purge and `manage.py requeue_dead`."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit.models import AuditRecord
from delivery.dlq import message_discard_dead, message_requeue_dead
from delivery.models import Attempt, Message
from delivery.tasks import purge_dead
from tests.delivery.conftest import run_pump


@pytest.fixture
def dead(email_only, accept, live, smtp_server):
    """Two dead-lettered messages (554: the message refused) whose cause is fixed afterwards."""
    smtp_server.reply_for("ada@example.org", 554)  # 5.7.1: the message, not the address
    events = [accept(), accept()]
    run_pump()
    smtp_server.clear_reply("ada@example.org")
    messages = [Message.objects.get(event=e) for e in events]
    assert {m.state for m in messages} == {"dead"}
    return messages


def test_it_requeues_dead_messages_with_a_fresh_attempt_budget(dead, smtp_server):
    assert message_requeue_dead(message_ids=[dead[0].pk], actor="ops") == 1

    requeued = Message.objects.get(pk=dead[0].pk)
    assert (requeued.state, requeued.attempts, requeued.last_error) == ("pending", 0, "")
    row = AuditRecord.objects.get(message_uid=requeued.uid, kind="message.pending", actor="ops")
    assert row.data["from"] == "dead"

    run_pump()

    assert Message.objects.get(pk=dead[0].pk).state == "sent"
    assert Message.objects.get(pk=dead[1].pk).state == "dead"
    assert len(smtp_server.messages) == 1
    assert Attempt.objects.filter(message=dead[0]).count() == 2


def test_it_requeues_only_dead_messages(dead):
    Message.objects.filter(pk=dead[1].pk).update(state="sent")

    assert message_requeue_dead(message_ids=[m.pk for m in dead], actor="ops") == 1


def test_it_discards_dead_messages_with_lineage(dead):
    assert message_discard_dead(message_ids=[dead[0].pk], actor="ops") == 1

    assert not Message.objects.filter(pk=dead[0].pk).exists()
    assert AuditRecord.objects.filter(message_uid=dead[0].uid, kind="message.discarded").exists()


def test_it_purges_dead_messages_only_after_the_retention(dead, settings):
    settings.DLQ_RETENTION_HOURS = 72
    Message.objects.filter(pk=dead[0].pk).update(updated_at=timezone.now() - timedelta(hours=73))
    Message.objects.filter(pk=dead[1].pk).update(updated_at=timezone.now() - timedelta(hours=71))

    assert purge_dead() == 1

    assert list(Message.objects.values_list("pk", flat=True)) == [dead[1].pk]
    assert AuditRecord.objects.filter(message_uid=dead[0].uid, kind="message.purged").exists()


def test_the_command_requeues_given_ids_and_uids(dead):
    out = StringIO()

    call_command("requeue_dead", str(dead[0].uid), str(dead[1].pk), stdout=out)

    assert out.getvalue().strip() == "requeued 2 dead message(s)"
    assert set(Message.objects.values_list("state", flat=True)) == {"pending"}


def test_the_command_requeues_all(dead):
    out = StringIO()

    call_command("requeue_dead", "--all", stdout=out)

    assert out.getvalue().strip() == "requeued 2 dead message(s)"


@pytest.mark.parametrize("args", [[], ["--all", "1"], ["not-an-id"]])
def test_the_command_rejects_bad_arguments(dead, args):
    with pytest.raises(CommandError):
        call_command("requeue_dead", *args)
    assert set(Message.objects.values_list("state", flat=True)) == {"dead"}
