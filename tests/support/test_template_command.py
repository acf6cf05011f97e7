"""`manage.py template KEY --whitelist on|off --enable on|off --reason TEXT`: the runbook's
levers from a shell, audited like the admin's actions."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditRecord
from templates.models import Template

KEY = "t_missing_items_intake"


def test_it_whitelists_and_disables_with_an_audited_reason(support_demo, capsys):
    call_command("template", KEY, whitelist="on", reason="tier-1 rollout", actor="olivia")
    call_command("template", KEY, enable="off", reason="wrong wording", actor="olivia")

    template = Template.objects.get(key=KEY)
    assert (template.whitelisted, template.enabled) == (True, False)
    rows = AuditRecord.objects.filter(kind__in=["template.whitelisted", "template.enabled"])
    assert [(r.kind, r.actor, r.data["reason"]) for r in rows.order_by("id")] == [
        ("template.whitelisted", "olivia", "tier-1 rollout"),
        ("template.enabled", "olivia", "wrong wording"),
    ]
    assert "whitelisted=on enabled=off" in capsys.readouterr().out.splitlines()[-1]


def test_it_records_nothing_when_the_value_does_not_change(support_demo):
    before = AuditRecord.objects.count()
    call_command("template", KEY, enable="on", reason="already on", actor="olivia")
    assert AuditRecord.objects.count() == before


@pytest.mark.parametrize(
    ("args", "options", "message"),
    [
        ([KEY], {"whitelist": "on"}, "--reason is required"),
        ([KEY], {"whitelist": "yes", "reason": "x"}, "--whitelist must be on or off"),
        (["t_nope"], {"enable": "on", "reason": "x"}, "no template with key"),
    ],
)
def test_it_refuses_bad_input_and_changes_nothing(support_demo, args, options, message):
    with pytest.raises(CommandError, match=message):
        call_command("template", *args, **options)
    assert Template.objects.get(key=KEY).whitelisted is False
