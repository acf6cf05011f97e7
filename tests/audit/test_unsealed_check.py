"""The sealer's pre-check (`audit.services._unsealed_rows`, one statement per ticker pass):
true exactly when a lineage row lies above the newest seal, and read through the primary
key's index, so that its cost does not grow with the lineage already sealed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection

from audit import services
from audit.services import audit_append, audit_seal


def test_it_is_true_exactly_when_a_row_lies_above_the_newest_seal(db: Any) -> None:
    assert services._unsealed_rows() is False  # no rows, no seal
    audit_append(kind="event.received")
    assert services._unsealed_rows() is True  # a row, no seal yet
    assert audit_seal() == 1
    assert services._unsealed_rows() is False
    audit_append(kind="event.received")
    assert services._unsealed_rows() is True


def _relation_scans(node: dict[str, Any], relation: str) -> list[str]:
    found = [node["Node Type"]] if node.get("Relation Name") == relation else []
    for child in node.get("Plans", []):
        found += _relation_scans(child, relation)
    return found


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's plan")
def test_it_reads_the_lineage_through_its_index_not_a_scan(db: Any) -> None:
    # Enough sealed rows, with statistics, for the planner to weigh a sequential scan.
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_auditrecord (at, kind, request_id, recipient_id, actor, data) "
            "SELECT now(), 'event.received', '', '', '', '{}' FROM generate_series(1, 20000)"
        )
    assert audit_seal(batch=20000) == 20000
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE audit_auditrecord")
        cursor.execute(f"EXPLAIN (FORMAT JSON) {services._unsealed_sql()}")
        (plan,) = cursor.fetchone()
    root = (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]
    scans = _relation_scans(root, "audit_auditrecord")
    assert scans, "the statement reads the lineage"
    assert "Seq Scan" not in scans, scans
