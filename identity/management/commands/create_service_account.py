"""`manage.py create_service_account NAME --scopes events:write,events:read [--json]`"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError

from identity.services import ScopeError, service_account_create


class Command(BaseCommand):
    help = "Create a machine client and print its client id and secret (shown once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument(
            "--scopes",
            default="events:write,events:read",
            help="Comma-separated scopes (events:write, events:read, suppressions:read, "
            "suppressions:write).",
        )
        parser.add_argument(
            "--json", action="store_true", help="Print exactly one JSON line on stdout."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["json"]:
            _logs_to_stderr()
        scopes = [s.strip() for s in options["scopes"].split(",") if s.strip()]
        try:
            account, secret = service_account_create(
                name=options["name"], scopes=scopes, actor="manage.py"
            )
        except ScopeError as exc:
            raise CommandError(f"--scopes: {exc}") from exc
        except IntegrityError as exc:
            raise CommandError(f"a service account named {options['name']!r} exists") from exc
        if options["json"]:
            payload = {
                "client_id": account.client_id,
                "client_secret": secret,
                "scopes": account.scopes,
            }
            self.stdout.write(json.dumps(payload))
            return
        self.stdout.write(f"client_id:     {account.client_id}")
        self.stdout.write(f"client_secret: {secret}")
        self.stdout.write(f"scopes:        {' '.join(account.scopes)}")
        self.stdout.write("The secret is shown only now; store it in your secret manager.")


def _logs_to_stderr() -> None:
    """--json promises exactly one line on stdout, so log lines go to stderr instead."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)
