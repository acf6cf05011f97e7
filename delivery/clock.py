"""The database clock. Leases, due times and expiry compare against it, never against the
host's clock: worker nodes' clocks drift, the database is the one clock they all share."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.utils.dateparse import parse_datetime


def db_now() -> datetime:
    """The database's current time (aware, UTC)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT STATEMENT_TIMESTAMP()")
        else:
            # The same expression Django's Now() uses on SQLite (millisecond precision, UTC).
            cursor.execute("SELECT STRFTIME('%Y-%m-%d %H:%M:%f', 'NOW')")
        value = cursor.fetchone()[0]
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None:
            raise ValueError("the database returned an unreadable timestamp")
        value = parsed
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


class DbClock:
    """The database time read once, advanced by this process's monotonic clock: DB-clock
    readings for every message of a batch without a query each."""

    def __init__(self) -> None:
        self._base = db_now()
        self._mono = time.monotonic()

    def now(self) -> datetime:
        return self._base + timedelta(seconds=time.monotonic() - self._mono)
