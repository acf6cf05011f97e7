"""Messages per state for /metrics without counting the message table: exact counts kept by
database triggers (see MessageTally), summed at scrape time, folded once a minute."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, Sum

from comcenter.lib.db import db_now, quote
from delivery.models import MessageTally


def _window_start(now: datetime) -> int:
    """The first hour of the DLQ retention window (its current, partial hour included)."""
    return int(now.timestamp() // 3600) - settings.DLQ_RETENTION_HOURS


def message_tally(*, now: datetime | None = None) -> tuple[dict[str, int], dict[str, int]]:
    """(messages in each state now, entries into each state within the DLQ retention window),
    in one query over the folded tally (a few hundred rows whatever the message count).
    `now` is the database clock, if the caller has read it already."""
    start = _window_start(now or db_now())
    rows = (
        MessageTally.objects.values("state")
        .annotate(net=Sum("net"), entered=Sum("entered", filter=Q(hour__gte=start)))
        .order_by()
    )
    counts = {row["state"]: row["net"] for row in rows}
    entered = {row["state"]: row["entered"] or 0 for row in rows}
    return counts, entered


def tally_fold() -> int:
    """Periodic task: replace the tally's rows by one per state and hour inside the DLQ window
    and one per state (hour 0) before it; returns how many rows it folded. DELETE ...
    RETURNING takes exactly the rows it sums, so a change committed meanwhile is kept for the
    next fold, never lost."""
    start = _window_start(db_now())
    table = quote(MessageTally._meta.db_table)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} RETURNING state, hour, net, entered")  # noqa: S608
        taken = cursor.fetchall()
        folded: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
        for state, hour, net, entered in taken:
            sums = folded[(state, hour if hour >= start else 0)]
            sums[0] += net
            sums[1] += entered if hour >= start else 0
        MessageTally.objects.bulk_create(
            [
                MessageTally(state=state, hour=hour, net=net, entered=entered)
                for (state, hour), (net, entered) in folded.items()
                if net or entered
            ]
        )
    return len(taken)
