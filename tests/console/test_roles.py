"""The three groups of SPEC §15 exist after `migrate`, and `setup_roles` restores exactly
their rights (idempotent, audited when it changed something)."""

from __future__ import annotations

from io import StringIO
from typing import Any

from django.contrib.auth.models import Group, Permission
from django.core.management import call_command

from audit.models import AuditRecord
from console.roles import ROLES


def _rights(name: str) -> set[str]:
    group = Group.objects.get(name=name)
    return {
        f"{p.content_type.app_label}.{p.codename}"
        for p in group.permissions.select_related("content_type")
    }


def test_it_has_the_groups_with_their_rights_after_migrate(db: Any) -> None:
    assert _rights("Operator") == ROLES["Operator"]
    assert _rights("Auditor") == ROLES["Auditor"]
    assert Group.objects.get(name="Admin").permissions.count() == Permission.objects.count()


def test_it_restores_the_rights_and_changes_nothing_the_second_time(db: Any) -> None:
    operator = Group.objects.get(name="Operator")
    operator.permissions.add(Permission.objects.get(codename="change_serviceaccount"))
    operator.permissions.remove(Permission.objects.get(codename="change_flag"))

    first, second = StringIO(), StringIO()
    call_command("setup_roles", stdout=first)
    call_command("setup_roles", stdout=second)

    assert _rights("Operator") == ROLES["Operator"]
    assert "Operator: 1 permission(s) added, 1 removed" in first.getvalue()
    assert second.getvalue().splitlines() == [
        "Operator: unchanged",
        "Auditor: unchanged",
        "Admin: unchanged",
    ]
    record = AuditRecord.objects.filter(kind="roles.synced", actor="setup_roles").get()
    assert record.data["Operator"] == {
        "added": ["flags.change_flag"],
        "removed": ["identity.change_serviceaccount"],
    }


def test_it_gives_the_auditor_no_change_right(db: Any) -> None:
    assert all(
        name.split(".")[1].startswith(("view_", "export_", "verify_")) for name in ROLES["Auditor"]
    )
