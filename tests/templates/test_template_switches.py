"""Whitelist and enable switches: audited, idempotent."""

from __future__ import annotations

from audit.models import AuditRecord
from templates.models import Template
from templates.services import template_set_enabled, template_set_whitelisted


def test_it_whitelists_once_and_audits_it(make_template):
    template = make_template(whitelisted=False)
    assert template_set_whitelisted(template=template, value=True, actor="olivia") is True
    assert template_set_whitelisted(template=template, value=True, actor="oscar") is False
    assert Template.objects.get(pk=template.pk).whitelisted is True
    record = AuditRecord.objects.get(kind="template.whitelisted")
    assert (record.actor, record.data["whitelisted"], record.data["template_id"]) == (
        "olivia",
        True,
        template.pk,
    )


def test_it_disables_and_enables(make_template):
    template = make_template()
    assert template_set_enabled(template=template, value=False, actor="olivia") is True
    assert Template.objects.get(pk=template.pk).enabled is False
    assert template.enabled is False
    assert template_set_enabled(template=template, value=True, actor="olivia") is True
    assert [r.data["enabled"] for r in AuditRecord.objects.filter(kind="template.enabled")] == [
        False,
        True,
    ]
