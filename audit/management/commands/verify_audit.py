"""`manage.py verify_audit`: exit 0 when the hash chain is intact, 1 naming the first bad row."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from audit.services import audit_seal, audit_verify


class Command(BaseCommand):
    help = "Check the audit hash chain; exit 1 with the first altered or missing row."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--seal-first",
            action="store_true",
            help="Seal rows not yet chained before checking (the periodic sealer does this).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["seal_first"]:
            audit_seal()
        report = audit_verify()
        if report.ok:
            self.stdout.write(
                f"audit chain intact: {report.checked} rows verified, "
                f"{report.unsealed} not sealed yet"
            )
            return
        self.stderr.write(
            f"audit chain BROKEN at row id {report.first_bad_id}: {report.problem} "
            f"({report.checked} rows verified before it)"
        )
        sys.exit(1)
