"""The admin roles of SPEC §15 as groups with exactly their permissions.

`ROLES` is the single statement of who may do what; `roles_sync` makes the groups match it
(adding and removing permissions), run by `migrate` and `manage.py setup_roles`. The Admin
group holds every permission there is, so a new model is administrable without a change
here; Operator and Auditor get only what is listed."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission
from django.db import transaction

from audit.services import audit_append

OPERATOR, AUDITOR, ADMIN = "Operator", "Auditor", "Admin"

# Reads both roles share: events, messages, attempts, dead letters and lineage, and the
# configuration an operator works with.
_READS = (
    "audit.view_auditrecord",
    "audit.view_auditseal",
    "console.view_dashboard",
    "delivery.view_attempt",
    "delivery.view_deadletter",
    "delivery.view_message",
    "delivery.view_route",
    "delivery.view_suppression",
    "events.view_event",
    "events.view_eventtype",
    "guard.view_incident",
    "identity.view_jwksstate",
    "flags.view_flag",
    "flags.view_flagchange",
    "support.view_rule",
    "support.view_ticket",
    "templates.view_template",
    "templates.view_templateversion",
)

ROLES: dict[str, frozenset[str]] = {
    OPERATOR: frozenset(
        (
            *_READS,
            "flags.change_flag",  # with a reason, through flag_set
            "templates.add_template",
            "templates.change_template",  # edit, whitelist, enable/disable
            "delivery.add_route",
            "delivery.change_route",
            "delivery.delete_route",
            "delivery.add_suppression",
            "delivery.delete_suppression",
            "delivery.change_deadletter",  # requeue and discard
            "guard.resolve_incident",
            "support.add_rule",
            "support.change_rule",
            "support.delete_rule",
        )
    ),
    AUDITOR: frozenset((*_READS, "console.export_lineage", "console.verify_audit_chain")),
}


def _permissions(names: frozenset[str]) -> set[Permission]:
    wanted = {tuple(name.split(".", 1)) for name in names}
    found = {
        p
        for p in Permission.objects.select_related("content_type")
        if (p.content_type.app_label, p.codename) in wanted
    }
    missing = wanted - {(p.content_type.app_label, p.codename) for p in found}
    if missing:
        raise LookupError(f"unknown permissions in ROLES: {sorted(missing)}")
    return found


def roles_sync(*, actor: str, audited: bool = True) -> dict[str, dict[str, list[str]]]:
    """Create or update the three groups to hold exactly their rights; idempotent.

    Returns, per group, the permissions added and removed (empty when nothing changed); a
    change is audited unless `audited` is False (`migrate`: the deployment is the record,
    and a fresh database starts with an empty lineage)."""
    changes: dict[str, dict[str, list[str]]] = {}
    with transaction.atomic():
        for name in (OPERATOR, AUDITOR, ADMIN):
            group, _created = Group.objects.get_or_create(name=name)
            wanted = set(Permission.objects.all()) if name == ADMIN else _permissions(ROLES[name])
            current = set(group.permissions.all())
            added, removed = wanted - current, current - wanted
            if added:
                group.permissions.add(*added)
            if removed:
                group.permissions.remove(*removed)
            changes[name] = {
                "added": sorted(_label(p) for p in added),
                "removed": sorted(_label(p) for p in removed),
            }
        if audited and any(change["added"] or change["removed"] for change in changes.values()):
            audit_append(kind="roles.synced", actor=actor, data=changes)
    return changes


def _label(permission: Permission) -> str:
    return f"{permission.content_type.app_label}.{permission.codename}"


def roles_sync_after_migrate(*, apps: Any = None, using: str = "default", **kwargs: Any) -> None:
    from django.apps import apps as global_apps

    # This app's post_migrate may come before that of apps listed after it: create every
    # app's permissions first (idempotent), so the groups never miss one.
    for config in global_apps.get_app_configs():
        create_permissions(config, verbosity=0, using=using)
    roles_sync(actor="migrate", audited=False)
