"""Append-only in the database (PostgreSQL): no role can UPDATE or DELETE audit rows except
through the retention function, and the application's own role cannot lift that; rows that
commit late are never left outside their seal."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django.utils import timezone

from audit import services
from audit.database import app_role_grants
from audit.models import AuditRecord, AuditSeal
from audit.services import audit_append, audit_seal, audit_unsealed_count, audit_verify

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the trigger and the roles are PostgreSQL's"
    ),
]


def _connect(user: str) -> psycopg.Connection[Any]:
    settings = connection.settings_dict
    return psycopg.connect(
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
        dbname=settings["NAME"],
        user=user,
        autocommit=True,
    )


@pytest.fixture
def app_role(transactional_db: Any) -> Iterator[psycopg.Connection[Any]]:
    """A real login role that owns nothing, with the application's grants; a connection as it."""
    role = f"comcenter_app_test_{secrets.token_hex(4)}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} LOGIN")
        for statement in app_role_grants(role):
            cursor.execute(statement)
    audit_append(kind="test.step", data={"n": 1})
    audit_seal()
    conn = _connect(role)
    try:
        yield conn
    finally:
        conn.close()
        with connection.cursor() as cursor:
            cursor.execute(f"DROP OWNED BY {role}")
            cursor.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditrecord SET data = '{}'",
        "DELETE FROM audit_auditrecord",
        "TRUNCATE audit_auditrecord",
        "UPDATE audit_auditseal SET hash = ''",
        "DELETE FROM audit_auditseal",
        "ALTER TABLE audit_auditrecord DISABLE TRIGGER USER",
        "DROP TRIGGER audit_record_append_only ON audit_auditrecord",
        # Setting the purge function's marker itself does not help either.
        "SELECT set_config('comcenter.audit_purge', 'on', false); DELETE FROM audit_auditrecord",
    ],
)
def test_it_refuses_the_application_role_every_change_of_audit_rows(app_role, statement):
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app_role.execute(statement)
    assert AuditRecord.objects.count() == 1
    assert audit_verify().ok


def test_it_lets_the_application_role_append_lineage_and_call_the_purge(app_role):
    app_role.execute(
        "INSERT INTO audit_auditrecord (kind, request_id, recipient_id, actor, data) "
        "VALUES ('test.step', '', '', 'app', '{}')"
    )
    cutoff = timezone.now() - timedelta(days=400)
    row = app_role.execute(
        "SELECT seals, records FROM comcenter_audit_purge(%s, 10)", [cutoff]
    ).fetchone()
    assert row == (0, 0)  # nothing that old
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app_role.execute(
            "SELECT * FROM comcenter_audit_purge(%s, 10)", [timezone.now() - timedelta(days=1)]
        )
    assert AuditRecord.objects.count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("change", ["update", "delete"])
def test_it_refuses_the_tables_owner_too_outside_the_purge(change):
    audit_append(kind="test.step", data={"n": 1})
    audit_seal()
    rows = AuditRecord.objects.all()
    seals = AuditSeal.objects.all()
    for queryset, values in ((rows, {"data": {}}), (seals, {"hash": ""})):

        def attempt(queryset=queryset, values=values) -> None:
            with transaction.atomic():
                queryset.update(**values) if change == "update" else queryset.delete()

        with pytest.raises(DatabaseError, match="append-only"):
            attempt()
    assert audit_verify().ok


@pytest.mark.django_db(transaction=True)
def test_it_never_seals_past_a_row_whose_transaction_has_not_committed(monkeypatch):
    """Ids are taken at insert, rows appear at commit: a seal must not skip an id that a
    running transaction holds, or the row would later appear inside a closed seal."""
    monkeypatch.setattr(services, "GAP_SETTLE_SECONDS", 0.0)
    audit_append(kind="test.before")
    late = _connect(connection.settings_dict["USER"])
    late.autocommit = False
    late.execute(
        "INSERT INTO audit_auditrecord (kind, request_id, recipient_id, actor, data) "
        "VALUES ('test.late', '', '', '', '{}')"
    )
    audit_append(kind="test.after")  # a higher id, committed first
    try:
        for _ in range(3):
            audit_seal()
        assert audit_unsealed_count() == 1  # "after" waits behind the running insert
        assert AuditSeal.objects.get().last_id < AuditRecord.objects.get(kind="test.after").id
    finally:
        late.commit()
        late.close()
    for _ in range(3):
        audit_seal()
    assert audit_unsealed_count() == 0
    report = audit_verify()
    assert (report.ok, report.checked) == (True, 3)
