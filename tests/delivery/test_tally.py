"""Queue gauges in O(1): the trigger-kept tally agrees with the message table through
inserts, state changes and deletes, before and after folding, and a scrape of /metrics
issues the same small number of queries whatever the table holds."""

from __future__ import annotations

from collections import Counter

from django.db import connection
from django.test.utils import CaptureQueriesContext

from delivery.models import Message, MessageTally
from delivery.outbox import outbox_consume
from delivery.selectors import queue_stats
from delivery.tally import message_tally, tally_fold
from guard.services import queue_depth
from tests.delivery.conftest import run_pump


def actual() -> dict[str, int]:
    return dict(Counter(Message.objects.values_list("state", flat=True)))


def tallied() -> dict[str, int]:
    now, _ = message_tally()
    return {state: n for state, n in now.items() if n}


def test_it_keeps_the_count_of_every_state_through_inserts_changes_and_deletes(
    routes, accept, pending_expansion
):
    for _ in range(4):
        accept()
    outbox_consume()
    assert tallied() == actual() == {"pending": 8}

    run_pump()  # dry run: every message moves (in batches) to dry_run
    assert tallied() == actual() == {"dry_run": 8}

    first = Message.objects.order_by("id").first()
    Message.objects.filter(pk=first.pk).update(state="dead")
    Message.objects.filter(pk=first.pk).update(last_error="same state: no change counted")
    Message.objects.exclude(pk=first.pk).filter(channel="sms").delete()
    assert tallied() == actual() == {"dead": 1, "dry_run": 3}


def test_it_folds_the_tally_without_changing_what_it_says(routes, accept, pending_expansion):
    for _ in range(3):
        accept()
    outbox_consume()
    run_pump()
    before = message_tally()
    rows = MessageTally.objects.count()

    assert tally_fold() == rows
    assert message_tally() == before
    # One row is left per state (and hour) with something to say: dry_run's count, and the
    # entries into pending of this hour (the messages left it again).
    assert sorted(MessageTally.objects.values_list("state", "net")) == [
        ("dry_run", 6),
        ("pending", 0),
    ]


def test_it_reports_entries_into_final_states_for_the_dlq_ratio(routes, accept):
    for _ in range(2):
        accept()
    outbox_consume()
    run_pump()
    Message.objects.filter(pk=Message.objects.order_by("id").first().pk).update(state="dead")
    tally_fold()

    stats = queue_stats()

    # 4 dry runs entered, then one of them became dead: 5 final entries, 1 of them dead.
    assert stats["dlq_ratio"] == 1 / 5
    assert (stats["dead"], stats["by_state"]["dry_run"], stats["depth"]) == (1, 3, 0)


def test_the_guards_queue_depth_is_the_tallys_in_one_query_whatever_the_table_size(
    routes, accept, pending_expansion
):
    for _ in range(3):
        accept()
    outbox_consume()
    with CaptureQueriesContext(connection) as small:
        depth = queue_depth()
    assert depth == actual()["pending"] == 6
    for _ in range(30):
        accept()
    outbox_consume()
    Message.objects.filter(pk=Message.objects.order_by("id").first().pk).update(state="dead")
    with CaptureQueriesContext(connection) as large:
        depth = queue_depth()
    assert depth == actual()["pending"] == 65  # the dead message is no longer queued

    # the database clock and the tally's sum; never a count over the message table
    assert len(large) == len(small) == 2
    assert not any('"delivery_message"' in q["sql"] for q in large.captured_queries)


def scrape_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200
    assert b"comcenter_queue_depth" in response.content
    return len(queries)


def test_a_scrape_issues_a_fixed_number_of_queries_whatever_the_table_size(
    routes, accept, client, settings
):
    settings.TRUST_PROXY_HEADERS = False  # no proxy in front: loopback may scrape
    scrape_queries(client)  # warm the per-process caches (flags)
    small = scrape_queries(client)
    for _ in range(60):
        accept()
    outbox_consume()
    run_pump()

    assert scrape_queries(client) == small
    # queue: tally sum, first due message, database clock; outbox: first pending, count;
    # flags: their table; guard: its open incidents.
    assert small == 7
