"""The lineage's look-ups by message stay on `audit_message` now that it is partial (rows
without a message are left out): PostgreSQL proves `message_uid IS NOT NULL` from
`message_uid = X`, alone or in the admin's search (which compares exactly, so that the
indexes answer it)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from django.contrib.admin.sites import site
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import QuerySet
from django.test import RequestFactory

from audit.models import AuditRecord
from audit.services import audit_append

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the planner's proof is PostgreSQL's"
)


def plan(queryset: QuerySet[AuditRecord]) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    return queryset.explain()


def test_it_leaves_rows_without_a_message_out_of_the_index(db: Any) -> None:
    message = uuid.uuid4()
    audit_append(kind="event.received", event_uid=uuid.uuid4())
    audit_append(kind="message.dry_run", message_uid=message)
    assert definition().endswith("WHERE (message_uid IS NOT NULL)")
    assert list(AuditRecord.objects.filter(message_uid=message).values_list("kind", flat=True)) == [
        "message.dry_run"
    ]


def test_it_finds_a_message_s_rows_through_the_partial_index(db: Any) -> None:
    assert "audit_message" in plan(AuditRecord.objects.filter(message_uid=uuid.uuid4()))


def indexes_in(found: str) -> set[str]:
    return set(re.findall(r"Index Scan (?:on|using) (\w+)", found))


@pytest.mark.parametrize(
    ("term", "used"),
    [
        (str(uuid.uuid4()), {"audit_event", "audit_message", "audit_request", "audit_recipient"}),
        ("req-1", {"audit_request", "audit_recipient"}),
    ],
)
def test_it_keeps_the_admin_search_on_indexes(db: Any, term: str, used: set[str]) -> None:
    admin = site._registry[AuditRecord]
    found, _ = admin.get_search_results(RequestFactory().get("/"), AuditRecord.objects.all(), term)
    explained = plan(found)
    assert "Seq Scan" not in explained
    assert indexes_in(explained) == used


def definition() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_indexdef('audit_message'::regclass)")
        (found,) = cursor.fetchone()
    return str(found)


def test_it_swaps_the_index_both_ways_by_its_name(transactional_db: Any) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([("audit", "0003_append_only")])
    assert definition().endswith("USING btree (message_uid)")
    executor.loader.build_graph()
    executor.migrate([("audit", "0004_audit_message_partial")])
    assert definition().endswith("WHERE (message_uid IS NOT NULL)")
