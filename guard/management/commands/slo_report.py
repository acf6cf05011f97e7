"""`manage.py slo_report [--since --until] [--json]`: the error-budget ledger (guard/slo.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from guard.slo import slo_report, slo_report_text

DEFAULT_DAYS = 7


def _moment(raw: str, name: str) -> datetime:
    parsed = parse_datetime(raw)
    if parsed is None:
        day = parse_date(raw)
        if day is None:
            raise CommandError(f"--{name} must be a date (2026-12-01) or an ISO datetime")
        parsed = datetime(day.year, day.month, day.day)
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


class Command(BaseCommand):
    help = "SLOs per day and for the window, with the error budget used and left."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--since", help=f"start (date or ISO datetime; default {DEFAULT_DAYS} days ago)"
        )
        parser.add_argument("--until", help="end (date or ISO datetime; default now)")
        parser.add_argument("--json", action="store_true", help="one JSON object on stdout")

    def handle(self, *args: Any, **options: Any) -> None:
        until = _moment(options["until"], "until") if options["until"] else timezone.now()
        since = (
            _moment(options["since"], "since")
            if options["since"]
            else until - timedelta(days=DEFAULT_DAYS)
        )
        if since >= until:
            raise CommandError("--since must be before --until")
        report = slo_report(since=since, until=until)
        if options["json"]:
            self.stdout.write(json.dumps(report))
            return
        for line in slo_report_text(report):
            self.stdout.write(line)
