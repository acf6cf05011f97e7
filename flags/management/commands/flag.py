"""`manage.py flag [NAME on|off --reason TEXT] [--actor WHO]`.

Bare `flag` lists every flag with its effective value and where it comes from; `flag NAME`
shows one; `flag NAME on|off --reason …` sets the operator's value, recorded as done by the
OS user (or `--actor`) through the command."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from comcenter.lib.actors import os_user
from flags.models import FlagSource
from flags.registry import FLAGS
from flags.services import FlagState, flag_set, flag_states

_VALUES = {"on": True, "off": False}


def _word(value: bool | None) -> str:
    return "-" if value is None else ("on" if value else "off")


class Command(BaseCommand):
    help = "List feature flags, or set one: flag NAME on|off --reason TEXT."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", nargs="?", help="Flag name, e.g. DISABLE_SEND.")
        parser.add_argument("value", nargs="?", help="on or off.")
        parser.add_argument("--reason", default="", help="Why (required to set a flag).")
        parser.add_argument("--actor", default="", help="Who, if not the OS user.")

    def handle(self, *args: Any, **options: Any) -> None:
        name = (options["name"] or "").strip().upper()
        if not name:
            self._print(flag_states())
            return
        if name not in FLAGS:
            raise CommandError(f"unknown flag {name!r}; the flags are: {', '.join(FLAGS)}")
        raw_value = options["value"]
        if raw_value is None:
            self._print([state for state in flag_states() if state.name == name])
            return
        value = _VALUES.get(raw_value.strip().lower())
        if value is None:
            raise CommandError(f"the value must be on or off, not {raw_value!r}")
        if not options["reason"].strip():
            raise CommandError("--reason is required to change a flag")
        actor = options["actor"].strip() or os_user()
        try:
            change = flag_set(
                name=name,
                value=value,
                actor=actor,
                reason=options["reason"],
                source=FlagSource.COMMAND,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"{name}: {_word(change.old_value)} -> {_word(change.new_value)} "
            f"(effective {_word(change.effective_value)}), by {actor}"
        )
        if change.effective_value != value:
            self.stdout.write(
                f"note: the environment sets {name}={_word(change.effective_value)}, its safe "
                "value, which wins; your value applies once the environment stops setting it"
            )

    def _print(self, states: list[FlagState]) -> None:
        self.stdout.write(
            f"{'FLAG':<20} {'VALUE':<6} {'SOURCE':<18} {'OPERATOR':<9} {'ENV':<4} DEFAULT"
        )
        for s in states:
            self.stdout.write(
                f"{s.name:<20} {_word(s.effective):<6} {s.source:<18} {_word(s.db_value):<9} "
                f"{_word(s.env_value):<4} {_word(s.default)}"
            )
