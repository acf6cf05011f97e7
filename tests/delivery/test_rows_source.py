"""Rows as statement parameters (comcenter/lib/db.py `rows_source` / `rows_params`), which the
set-based writers build on: many rows come back in order, with their values as given."""

from __future__ import annotations

import json
import uuid

import pytest
from django.db import connection

from audit.models import AuditRecord
from comcenter.lib.db import rows_params, rows_source

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the set-based writers are PostgreSQL's"
)

NAMES = ["id", "kind", "event_uid", "data"]
ROWS = [
    [3, "a", uuid.UUID(int=1), {"text": "quotes \" and ' and {braces}, é", "list": [1, None]}],
    [1, "b", None, None],
    [2, "c", uuid.UUID(int=2), [None, {"nested": {"deep": True}}]],
    [4, "d", None, "just text"],
]


def _read(rows: list[list[object]]) -> list[tuple[object, ...]]:
    sql = f"SELECT * FROM {rows_source(AuditRecord, 'r', NAMES, many=len(rows) > 1)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, rows_params(AuditRecord, NAMES, rows))
        found = cursor.fetchall()
    # Django reads jsonb as its text (JSONField decodes it); None stays SQL NULL.
    return [(*row[:3], None if row[3] is None else json.loads(row[3])) for row in found]


@pytest.mark.django_db
def test_it_carries_many_rows_in_their_order_with_json_none_as_null() -> None:
    assert _read(ROWS) == [tuple(row) for row in ROWS]


@pytest.mark.django_db
def test_it_carries_one_row_as_plain_parameters() -> None:
    assert _read(ROWS[:1]) == [tuple(ROWS[0])]
    assert _read(ROWS[1:2]) == [tuple(ROWS[1])]
