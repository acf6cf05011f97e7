"""`manage.py setup_roles`: create or update the admin groups of SPEC §15 (idempotent;
`migrate` also does it)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from console.roles import roles_sync


class Command(BaseCommand):
    help = "Create or update the Operator, Auditor and Admin groups with their permissions."

    def handle(self, *args: Any, **options: Any) -> None:
        for group, change in roles_sync(actor="setup_roles").items():
            added, removed = len(change["added"]), len(change["removed"])
            state = (
                f"{added} permission(s) added, {removed} removed"
                if added or removed
                else "unchanged"
            )
            self.stdout.write(f"{group}: {state}")
