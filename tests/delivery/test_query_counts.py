""" "A few queries whatever the batch size": the round trips of a claim, a dry-run batch, an
outbox expansion and the intake do not grow with the number of rows (PostgreSQL, whose
writers are set-based; SQLite's ORM writer goes row by row under its single-writer lock).
A live batch adds exactly one statement per send: each result is committed before the next
send starts (at most one duplicate per crash)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from delivery.claims import claim
from delivery.dispatcher import dispatch_batch
from delivery.models import Message, MessageState, Suppression
from delivery.outbox import outbox_expand
from delivery.suppressions import suppression_add
from events.models import Event
from events.services import event_accept
from flags.services import flag_is_on
from templates.models import Template
from templates.services import template_create
from tests.delivery.conftest import ALICE, make_payload, set_flag

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the set-based writers are PostgreSQL's"
    ),
    # Outside a test transaction, as in production: no savepoints around each write.
    pytest.mark.usefixtures("transactional_db"),
]


@pytest.fixture(autouse=True)
def _flags_read_once(settings):
    # The flag snapshot must not expire between the warm-up read and the measured run on a
    # loaded machine: a re-read would count as the batch's query.
    settings.FLAG_CACHE_SECONDS = 600


def _queries(run: Callable[[], object]) -> int:
    flag_is_on("DISABLE_SEND")  # the flags are cached per process: read them outside
    with CaptureQueriesContext(connection) as captured:
        run()
    return len(captured)


def _accept(accept: Callable[..., Event], count: int, *, prefix: str) -> None:
    for n in range(count):
        accept(ordering_key=f"{prefix}-{n}", recipient={"email": f"s{n}@example.org"})


def _expansion_queries(accept: Callable[..., Event]) -> tuple[int, int]:
    _accept(accept, 1, prefix="first")
    outbox_expand()  # creates the expansion's lock row, once per database
    _accept(accept, 2, prefix="small")
    small = _queries(outbox_expand)
    _accept(accept, 40, prefix="large")
    large = _queries(outbox_expand)
    assert Message.objects.count() == 43
    return small, large


def test_it_expands_the_outbox_in_the_same_queries_whatever_the_batch_size(
    email_only, accept, pending_expansion
):
    # The lanes of new keys: one look-up, then one INSERT … RETURNING (no second look-up);
    # the enabled routes and the routes' templates one query each, the lock one statement.
    assert _expansion_queries(accept) == (12, 12)
    assert set(Message.objects.values_list("state", flat=True)) == {MessageState.PENDING}


def test_it_decides_a_dry_run_at_expansion_in_the_same_queries_whatever_the_batch_size(
    email_only, accept
):
    # The expansion's plus the lanes' lock, their active messages and the batch's
    # suppressions (the clock is the expansion's): no dry-run batch transaction follows.
    assert _expansion_queries(accept) == (15, 15)
    assert set(Message.objects.values_list("state", flat=True)) == {MessageState.DRY_RUN}


def test_it_reads_the_templates_of_every_route_in_one_query(routes, accept):
    # Two routes (email and SMS), each with its own template, in two locales each.
    for template in routes.values():
        template_create(
            key=template.key,
            channel=template.channel,
            locale="fr",
            subject=template.subject,
            body="x",
            whitelisted=True,
        )
    _accept(accept, 1, prefix="first")
    outbox_expand()
    _accept(accept, 3, prefix="key")
    table = Template._meta.db_table

    flag_is_on("DISABLE_SEND")
    with CaptureQueriesContext(connection) as captured:
        outbox_expand()

    assert sum(f'FROM "{table}"' in query["sql"] for query in captured.captured_queries) == 1
    assert set(Message.objects.values_list("channel", flat=True)) == {"email", "sms"}
    assert not Message.objects.filter(template=None).exists()


def test_it_claims_a_batch_in_the_same_queries_whatever_its_size(
    email_only, accept, pending_expansion
):
    _accept(accept, 42, prefix="key")
    outbox_expand()

    small = _queries(lambda: claim(channel="email", limit=2, paused=False))
    large = _queries(lambda: claim(channel="email", limit=40, paused=False))

    assert Message.objects.filter(state=MessageState.DISPATCHING).count() == 42
    assert (small, large) == (10, 10)


def test_it_dry_runs_a_batch_in_the_same_queries_whatever_its_size(
    email_only, accept, pending_expansion
):
    _accept(accept, 42, prefix="key")
    outbox_expand()

    small = _queries(lambda: dispatch_batch(channel="email", limit=2))
    large = _queries(lambda: dispatch_batch(channel="email", limit=40))

    assert Message.objects.filter(state=MessageState.DRY_RUN).count() == 42
    assert (small, large) == (11, 11)


def test_it_reads_a_batchs_suppressions_in_one_query_whatever_their_categories(
    email_only, accept, pending_expansion
):
    _accept(accept, 42, prefix="key")
    for n in range(0, 42, 2):  # every other address; `all` or `promotional` in turn
        category = "all" if n % 4 else "promotional"
        suppression_add(
            channel="email",
            address=f"s{n}@example.org",
            reason="bounce",
            actor="t",
            category=category,
        )
    outbox_expand()
    table = Suppression._meta.db_table

    reads = []
    for limit in (2, 40):
        flag_is_on("DISABLE_SEND")
        with CaptureQueriesContext(connection) as captured:
            dispatch_batch(channel="email", limit=limit)
        reads.append(sum(table in query["sql"] for query in captured.captured_queries))

    assert reads == [1, 1]
    # A promotional opt-out does not stop these transactional messages; `all` does.
    assert Message.objects.filter(state=MessageState.SUPPRESSED).count() == 10
    assert Message.objects.filter(state=MessageState.DRY_RUN).count() == 32


def test_it_sends_a_live_batch_with_one_statement_per_send(email_only, accept, live, smtp_server):
    set_flag("RATE_LIMIT_ENABLED", False)
    _accept(accept, 42, prefix="key")
    outbox_expand()

    small = _queries(lambda: dispatch_batch(channel="email", limit=2))
    large = _queries(lambda: dispatch_batch(channel="email", limit=40))

    assert Message.objects.filter(state=MessageState.SENT).count() == 42
    assert large - small == 40 - 2
    assert small == 13 + 2  # 13 whatever the size (the circuit read included), 1 per send


def test_it_accepts_an_event_in_one_statement(email_only):
    def accept() -> None:
        event_accept(
            caller=ALICE, payload=make_payload(), idempotency_key="q-1", request_id="req-q"
        )

    assert _queries(accept) == 1
