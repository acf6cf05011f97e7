"""`manage.py template KEY [--whitelist on|off] [--enable on|off] --reason TEXT` (SPEC §14).

The runbook's template levers from a shell: the same services as the admin's actions, so
each change is audited the same way (who, the new value, and here the reason too). Applies
to every locale of the key; bare `template KEY` shows them."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from comcenter.lib.actors import os_user
from templates.models import Template
from templates.services import template_set_enabled, template_set_whitelisted

_VALUES = {"on": True, "off": False}


def _switch(raw: str | None, option: str) -> bool | None:
    if raw is None:
        return None
    value = _VALUES.get(raw.strip().lower())
    if value is None:
        raise CommandError(f"{option} must be on or off, not {raw!r}")
    return value


class Command(BaseCommand):
    help = "Show a template, or whitelist/enable it: template KEY --whitelist on --reason TEXT."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("key", help="The template key, e.g. t_missing_items_intake.")
        parser.add_argument("--whitelist", help="on or off.")
        parser.add_argument("--enable", help="on or off.")
        parser.add_argument("--reason", default="", help="Why (required to change anything).")
        parser.add_argument("--actor", default="", help="Who, if not the OS user.")

    def handle(self, *args: Any, **options: Any) -> None:
        templates = list(Template.objects.filter(key=options["key"]).order_by("locale"))
        if not templates:
            raise CommandError(f"no template with key {options['key']!r}")
        whitelist = _switch(options["whitelist"], "--whitelist")
        enable = _switch(options["enable"], "--enable")
        if whitelist is not None or enable is not None:
            reason = options["reason"].strip()
            if not reason:
                raise CommandError("--reason is required to change a template")
            actor = options["actor"].strip() or os_user()
            for template in templates:
                if whitelist is not None:
                    template_set_whitelisted(
                        template=template, value=whitelist, actor=actor, reason=reason
                    )
                if enable is not None:
                    template_set_enabled(
                        template=template, value=enable, actor=actor, reason=reason
                    )
        for template in templates:
            self.stdout.write(
                f"{template.key} [{template.locale}] channel={template.channel} "
                f"tier={template.tier} whitelisted={'on' if template.whitelisted else 'off'} "
                f"enabled={'on' if template.enabled else 'off'}"
            )
