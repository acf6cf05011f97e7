"""DISABLE_SEND stops real sends on a running worker within 5 seconds; what is still queued
is recorded as dry run instead."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db.models import Max

from comcenter.lib.db import db_now
from delivery.models import Message
from tests.delivery.conftest import set_flag, wait_until

pytestmark = pytest.mark.slow

EVENTS = 120


def test_the_kill_switch_stops_sends_within_five_seconds(workers, email_only, accept, smtp_server):
    set_flag("DISABLE_SEND", False)
    set_flag("RATE_LIMIT_ENABLED", True)
    for n in range(EVENTS):
        accept(recipient={"id": f"student-{n}", "email": f"student-{n}@example.org"})
    # 10 sends a second: the queue would take about 12 s to drain.
    workers.start(1, EMAIL_URL=smtp_server.email_url, SEND_RATE_PER_MINUTE="600")
    wait_until(lambda: len(smtp_server.messages) >= 5)

    set_flag("DISABLE_SEND", True)
    switched_at = db_now()
    time.sleep(5)
    sent_by_then = len(smtp_server.messages)

    wait_until(lambda: not Message.objects.filter(state__in=["pending", "dispatching"]).exists())
    assert len(smtp_server.messages) == sent_by_then, "nothing left after the 5 s"
    assert sent_by_then < EVENTS
    assert Message.objects.filter(state="sent").count() == sent_by_then
    assert Message.objects.filter(state="dry_run").count() == EVENTS - sent_by_then
    last_send = Message.objects.filter(state="sent").aggregate(at=Max("dispatched_at"))["at"]
    assert last_send <= switched_at + timedelta(seconds=5)
