"""The plan PostgreSQL prepares for a send's result (delivery/transition_sql.py): the message
row found by its primary key, and the lane's other dispatching messages among that lane's
active ones; never a scan of every message in flight, which cost a row per message
dispatching elsewhere, for each send."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
import pytest
from django.db import connection

from delivery import transition_sql
from delivery.dispatcher import dispatch_batch
from delivery.outbox import outbox_expand
from events.models import Event

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the plan of PostgreSQL's prepared statement"
)


def _generic_plan(sql: str, params: Sequence[Any]) -> dict[str, Any]:
    """The plan PostgreSQL prepares once for `sql` (force_generic_plan, as every connection
    of ours: comcenter.lib.db.connection_setup), for these parameters."""
    numbered = iter(range(1, len(params) + 1))
    text = re.sub(r"%s", lambda _: f"${next(numbered)}", sql)
    with psycopg.ClientCursor(connection.connection) as cursor:
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        # A test's table fits in a page, which a sequential scan reads cheapest; the choice
        # between the indexes is what a full table would see.
        cursor.execute("SET enable_seqscan = off")
        cursor.execute(f"PREPARE send_plan AS {text}")
        try:
            values = ", ".join(["%s"] * len(params))
            cursor.execute(f"EXPLAIN (FORMAT JSON) EXECUTE send_plan({values})", list(params))
            row = cursor.fetchone()
            assert row is not None
            (plan,) = row
        finally:
            cursor.execute("DEALLOCATE send_plan")
            cursor.execute("RESET enable_seqscan")
    return json.loads(plan)[0]["Plan"] if isinstance(plan, str) else plan[0]["Plan"]


def _scans(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if "Scan" in node.get("Node Type", "") and node.get("Relation Name") == "delivery_message":
        yield node
    for child in node.get("Plans", []):
        yield from _scans(child)


def test_it_finds_a_sent_message_by_its_key_and_its_lane_among_its_active_messages(
    email_only: Any,
    accept: Callable[..., Event],
    live: Any,
    smtp_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Many messages in flight on other lanes when the send's result is written.
    for n in range(60):
        accept(ordering_key=f"key-{n}", recipient={"email": f"s{n}@example.org"})
    outbox_expand()
    plans: list[dict[str, Any]] = []
    prepared_rows = transition_sql.prepared_rows

    def explained(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        if '"delivery_attempt"' in sql and not plans:  # the result of a send
            plans.append(_generic_plan(sql, params))
        return prepared_rows(sql, params)

    monkeypatch.setattr(transition_sql, "prepared_rows", explained)

    dispatch_batch(channel="email", limit=60)

    [plan] = plans
    scans = {(scan.get("Alias"), scan.get("Index Name")) for scan in _scans(plan)}
    assert ("delivery_message", "delivery_message_pkey") in scans
    assert ("d", "message_lane_active") in scans
    assert all(index is not None for _, index in scans), scans
