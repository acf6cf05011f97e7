"""`manage.py smoke_pack FILE.csv [--out DIR]`: the support-routing smoke-test pack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from support.smoke import PackError, case_line, pack_read, pack_run, report_write, summary_of


class Command(BaseCommand):
    help = (
        "Run each case of a smoke-test pack through the classifier and the reply gates "
        "(nothing is sent or stored); exit 1 on any mismatch."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--out", type=Path, default=Path("smoke-report"))

    def handle(self, *args: Any, **options: Any) -> None:
        out = Path(options["out"])
        try:
            results = pack_run(pack_read(Path(options["file"])))
        except (OSError, PackError) as exc:
            raise CommandError(str(exc)) from None
        for result in results:
            self.stdout.write(case_line(result))
        report_write(results, out)
        summary = summary_of(results)
        self.stdout.write(
            f"{summary['cases'] - len(summary['failed'])}/{summary['cases']} cases passed; "
            f"report in {out}"
        )
        if summary["failed"]:
            raise CommandError(f"{len(summary['failed'])} case(s) failed: {summary['failed']}")
