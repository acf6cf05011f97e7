"""`manage.py evidence --url URL --out DIR [--client-id --client-secret]`: the post-publish
checklist against a running deployment (guard/evidence.py). Exit 0 when every check is GREEN
or DEGRADED, 1 on any RED."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from guard.evidence import RED, EvidenceRun, evidence_write


class Command(BaseCommand):
    help = (
        "Run the post-publish checklist against URL; write evidence.log, summary.json and "
        "MANIFEST.sha256."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url", required=True, help="the deployment, e.g. https://comcenter.example.org"
        )
        parser.add_argument("--out", required=True, help="directory for the evidence bundle")
        parser.add_argument(
            "--client-id", default="", help="a service account with events:write,events:read"
        )
        parser.add_argument("--client-secret", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        url = options["url"]
        if not url.startswith(("http://", "https://")):
            raise CommandError("--url must start with http:// or https://")
        run = EvidenceRun(
            url=url,
            client_id=options["client_id"],
            client_secret=options["client_secret"],
            echo=self.stdout.write,
        )
        summary = run.run()
        for path in evidence_write(out=Path(options["out"]), summary=summary, lines=run.lines):
            self.stdout.write(f"wrote {path}")
        if summary["overall"] == RED:
            raise SystemExit(1)
