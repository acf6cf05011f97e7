"""`manage.py grant_app_role ROLE [--print]`: give the application's PostgreSQL role its
privileges, none of which can change the audit lineage (see audit/database.py). Run it as the
tables' owner after every `migrate` (new tables need their grants too)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

from audit.database import app_role_grants


class Command(BaseCommand):
    help = "Grant the application's PostgreSQL role what it needs; no UPDATE/DELETE on audit."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("role", help="the role web and worker processes connect as")
        parser.add_argument("--print", action="store_true", help="print the SQL, change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        statements = app_role_grants(options["role"])
        if options["print"]:
            self.stdout.write(";\n".join(statements) + ";")
            return
        if connection.vendor != "postgresql":
            raise CommandError("grant_app_role needs PostgreSQL (DATABASE_URL=postgres://...)")
        with transaction.atomic(), connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        self.stdout.write(f"granted {options['role']} the application's privileges")
