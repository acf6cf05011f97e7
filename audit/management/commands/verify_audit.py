"""`manage.py verify_audit [--seal-first] [--expect-head SEQ:HASH]`: exit 0 when the audit
chain is intact, 1 naming the first bad row."""

from __future__ import annotations

import re
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.services import audit_seal, audit_verify

HEAD = re.compile(r"[0-9]+:[0-9a-f]{64}", re.ASCII)


class Command(BaseCommand):
    help = "Check the audit chain; exit 1 with the first altered, inserted or missing row."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--seal-first",
            action="store_true",
            help="Seal rows not yet chained before checking (the periodic sealer does this).",
        )
        parser.add_argument(
            "--expect-head",
            default="",
            help="A chain head SEQ:HASH published earlier (the 'audit chain sealed' log line, "
            "or this command's output): the chain must still contain it.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        expect_head = options["expect_head"]
        if expect_head and not HEAD.fullmatch(expect_head):
            raise CommandError("--expect-head: give SEQ:HASH, e.g. 42:<64 hex digits>")
        if options["seal_first"]:
            audit_seal()
        report = audit_verify(expect_head=expect_head)
        if report.ok:
            self.stdout.write(
                f"audit chain intact: {report.checked} rows verified in {report.seals} seals, "
                f"{report.unsealed} not sealed yet; head {report.head or 'none'}"
            )
            return
        where = f"row id {report.first_bad_id}" if report.first_bad_id else "the head"
        self.stderr.write(
            f"audit chain BROKEN at {where}: {report.problem} "
            f"({report.checked} rows verified before it)"
        )
        sys.exit(1)
