"""The message table's indexes after migration 0009 (no template_key or recipient index): the
tally triggers of 0005 survive the migration both ways on both databases and still count."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from delivery.outbox import outbox_consume
from tests.delivery.conftest import run_pump
from tests.delivery.test_tally import actual, tallied

TALLY_TRIGGERS = {
    "delivery_message_tally_insert",
    "delivery_message_tally_update",
    "delivery_message_tally_delete",
}
TEMPLATE_KEY_INDEX = "delivery_message_template_key_b347476f"


def triggers() -> set[str]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger"
                " WHERE tgrelid = 'delivery_message'::regclass AND NOT tgisinternal"
            )
        else:
            cursor.execute(
                "SELECT name FROM sqlite_master"
                " WHERE type = 'trigger' AND tbl_name = 'delivery_message'"
            )
        return {name for (name,) in cursor.fetchall()}


def indexes() -> set[str]:
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, "delivery_message")
    return {name for name, spec in found.items() if spec["index"]}


def migrate_delivery(target: str) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([("delivery", target)])


def test_it_drops_the_indexes_and_keeps_the_triggers_both_ways(transactional_db: Any) -> None:
    assert triggers() == TALLY_TRIGGERS
    assert {TEMPLATE_KEY_INDEX, "message_recipient"}.isdisjoint(indexes())

    migrate_delivery("0008_feedback")
    assert triggers() == TALLY_TRIGGERS
    assert {TEMPLATE_KEY_INDEX, "message_recipient"} <= indexes()
    if connection.vendor == "postgresql":
        assert f"{TEMPLATE_KEY_INDEX}_like" in indexes()

    migrate_delivery("0009_message_fewer_indexes")
    assert triggers() == TALLY_TRIGGERS
    assert not {i for i in indexes() if "template_key" in i or i == "message_recipient"}


def test_it_still_counts_the_messages_after_the_migration(
    transactional_db: Any, routes: Any, accept: Any, pending_expansion: Any
) -> None:
    for _ in range(3):
        accept()
    outbox_consume()
    assert tallied() == actual() == {"pending": 6}
    run_pump()
    assert tallied() == actual() == {"dry_run": 6}
