"""The ticker: one at a time, waking what becomes due with time, and the periodic tasks."""

from __future__ import annotations

from datetime import timedelta

from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from comcenter.schedules import sync_schedules
from delivery.leases import worker_lease_take
from delivery.models import Attempt, Lane, Message
from delivery.outbox import outbox_consume
from delivery.tasks import TICKER_LEASE, tick, tick_pass
from tests.delivery.conftest import states


def test_migrate_registers_every_periodic_task(transactional_db, settings):
    """The deployment path itself: `migrate` (nothing left to apply) must leave every
    periodic task registered, or nothing wakes retries, gap waits and lost wake-ups."""
    Schedule.objects.all().delete()

    call_command("migrate", verbosity=0, interactive=False)

    registered = set(Schedule.objects.values_list("name", flat=True))
    assert registered == {name for name, _, _ in settings.PERIODIC_TASKS}


def test_the_ticker_and_the_purge_are_periodic_tasks(db):
    sync_schedules()

    schedules = {s.name: s for s in Schedule.objects.all()}
    assert schedules["delivery-ticker"].func == "delivery.tasks.tick"
    assert schedules["delivery-ticker"].minutes == 1
    assert schedules["delivery-dlq-purge"].func == "delivery.tasks.purge_dead"


def test_it_sends_a_retry_as_soon_as_it_is_due(email_only, accept, live, smtp_server):
    event = accept()
    outbox_consume()
    Message.objects.filter(event=event).update(
        state="retrying", next_attempt_at=timezone.now() + timedelta(seconds=0.4)
    )

    passes = tick(seconds=1.5)

    assert passes >= 2
    assert states(event) == {"email": "sent"}


def test_only_one_ticker_runs_at_a_time(email_only, accept, live, smtp_server):
    event = accept()
    assert worker_lease_take(name=TICKER_LEASE, holder="another-node", seconds=30)

    assert tick(seconds=0.6) == 0

    assert Message.objects.filter(event=event).count() == 0
    assert smtp_server.messages == []


def test_it_expands_an_event_whose_wake_up_was_lost(email_only, accept):
    event = accept()

    assert tick_pass(budget_seconds=5) == 0

    assert states(event) == {"email": "dry_run"}


def test_it_puts_a_message_whose_worker_died_back_in_line(email_only, accept, live, smtp_server):
    event = accept()
    outbox_consume()
    message = Message.objects.get(event=event)
    expired = timezone.now() - timedelta(seconds=1)
    Message.objects.filter(pk=message.pk).update(
        state="dispatching", lease_token=7, lease_until=expired
    )
    Lane.objects.filter(pk=message.lane_id).update(busy_until=expired)

    tick_pass(budget_seconds=5)

    message.refresh_from_db()
    assert message.state == "sent"
    assert message.attempts == 2
    assert list(
        Attempt.objects.filter(message=message).order_by("id").values_list("outcome", "lease_token")
    ) == [("abandoned", 7), ("sent", 8)]
    assert Lane.objects.get(pk=message.lane_id).busy_until is None
