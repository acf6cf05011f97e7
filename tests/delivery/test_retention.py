"""The retention purge of events, messages, attempts and lanes (RETENTION_DAYS): what is
past retention goes, batch by batch and audited; what the idempotency window, the outbox,
an unfinished message or the dead-letter retention still needs stays."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.test.utils import override_settings
from django.utils import timezone

from audit.models import AuditRecord
from audit.services import audit_seal, audit_verify
from comcenter.lib.metrics import RETENTION_PURGED
from delivery.models import Attempt, Lane, Message
from delivery.outbox import outbox_consume
from delivery.retention import retention_purge
from events.models import Event
from tests.delivery.conftest import ROOT, run_pump


def age(event: Event, *, hours: float) -> None:
    then = timezone.now() - timedelta(hours=hours)
    Event.objects.filter(pk=event.pk).update(received_at=then)
    Lane.objects.update(created_at=then)


def purged_metric(table: str) -> float:
    return RETENTION_PURGED.labels(table)._value.get()


def test_it_purges_a_finished_event_with_its_messages_and_lane_and_audits_it(email_only, accept):
    event = accept()
    run_pump()  # dry run: the message is final
    age(event, hours=31 * 24)
    before = purged_metric("events")

    counts = retention_purge()

    assert (counts["events"], counts["messages"], counts["lanes"]) == (1, 1, 1)
    assert not Event.objects.exists()
    assert not Message.objects.exists()
    assert not Lane.objects.exists()
    rows = AuditRecord.objects.filter(kind="retention.purged", actor="retention")
    assert [r.data.get("events") for r in rows.order_by("id")] == [1, None]
    assert rows.order_by("id").last().data["lanes"] == 1
    assert purged_metric("events") == before + 1
    # The event's own lineage stays (until AUDIT_RETENTION_DAYS) and the chain verifies.
    assert AuditRecord.objects.filter(event_uid=event.uid, kind="event.received").exists()
    audit_seal()
    assert audit_verify().ok


@override_settings(RETENTION_DAYS=3)
def test_it_never_purges_an_event_inside_the_idempotency_window(email_only, accept):
    recent, old = accept(), accept()
    run_pump()
    age(recent, hours=71)
    age(old, hours=73)

    assert retention_purge()["events"] == 1

    assert list(Event.objects.values_list("pk", flat=True)) == [recent.pk]


def test_it_keeps_a_dead_letter_inside_its_retention_and_purges_it_after(
    email_only, accept, live, smtp_server
):
    smtp_server.reply_for("ada@example.org", 554)  # 5.7.1: the message, not the address
    event = accept()
    run_pump()
    message = Message.objects.get(event=event)
    assert message.state == "dead"
    assert Attempt.objects.filter(message=message).exists()
    age(event, hours=31 * 24)

    assert retention_purge()["events"] == 0  # the DLQ keeps it 72 h after it died

    Message.objects.filter(pk=message.pk).update(updated_at=timezone.now() - timedelta(hours=73))
    counts = retention_purge()
    assert (counts["events"], counts["messages"]) == (1, 1)
    assert counts["attempts"] >= 1
    assert not Attempt.objects.exists()


def test_it_keeps_events_still_in_the_outbox_or_with_unfinished_messages(
    email_only, accept, pending_expansion
):
    in_outbox = accept()
    age(in_outbox, hours=31 * 24)
    assert retention_purge()["events"] == 0

    outbox_consume()  # its message exists now, pending: not final
    assert Message.objects.get(event=in_outbox).state == "pending"
    assert retention_purge() == {"events": 0, "messages": 0, "attempts": 0, "lanes": 0}
    assert Event.objects.filter(pk=in_outbox.pk).exists()


@pytest.mark.parametrize(
    ("env", "needed"),
    [
        ({"RETENTION_DAYS": "2"}, "at least 3"),
        ({"RETENTION_DAYS": "4", "DLQ_RETENTION_HOURS": "100"}, "at least 5"),
    ],
)
def test_it_refuses_to_start_with_a_retention_below_the_idempotency_and_dlq_minimums(env, needed):
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={
            **os.environ,
            "SECRET_KEY": "x" * 50,
            "DJANGO_SETTINGS_MODULE": "comcenter.settings",
            **env,
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "RETENTION_DAYS" in result.stderr
    assert needed in result.stderr
