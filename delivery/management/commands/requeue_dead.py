"""`manage.py requeue_dead [--all | ID ...]`: put dead-lettered messages back in line.

IDs are message uids (as the API shows them) or numeric ids (as the admin shows them)."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q

from delivery.dlq import message_requeue_dead
from delivery.models import Message, MessageState


class Command(BaseCommand):
    help = "Requeue dead-lettered messages: all of them, or the given message ids/uids."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ids", nargs="*", help="message uids or numeric ids")
        parser.add_argument("--all", action="store_true", help="requeue every dead message")

    def handle(self, *args: Any, **options: Any) -> None:
        ids: list[str] = options["ids"]
        if options["all"] == bool(ids):
            raise CommandError("give either --all or one or more message ids, not both")
        dead = Message.objects.filter(state=MessageState.DEAD)
        if not options["all"]:
            dead = dead.filter(_match(ids))
        found = list(dead.values_list("pk", flat=True))
        count = message_requeue_dead(message_ids=found, actor="manage.py requeue_dead")
        self.stdout.write(f"requeued {count} dead message(s)")
        if ids and count < len(ids):
            self.stderr.write(f"{len(ids) - count} id(s) matched no dead message")


def _match(ids: list[str]) -> Q:
    numbers: list[int] = []
    uids: list[uuid.UUID] = []
    for raw in ids:
        if raw.isdigit():
            numbers.append(int(raw))
            continue
        try:
            uids.append(uuid.UUID(raw))
        except ValueError:
            raise CommandError(f"{raw!r} is neither a message uid nor a numeric id") from None
    return Q(pk__in=numbers) | Q(uid__in=uids)
