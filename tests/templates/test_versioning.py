"""Editing creates a new immutable version; messages keep the version they used."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from audit.models import AuditRecord
from templates.models import TemplateVersion
from templates.rendering import render_version
from templates.services import template_create, template_update


def test_it_creates_version_one_on_create(make_template):
    template = make_template()
    version = template.current_version
    assert (version.number, version.created_by) == (1, "olivia")
    assert (version.subject, version.body, version.html) == (
        template.subject,
        template.body,
        template.html,
    )
    record = AuditRecord.objects.get(kind="template.created")
    assert record.data["version"] == 1
    assert record.data["content_hash"] == version.content_hash


def test_it_creates_a_new_version_when_content_changes(make_template, data):
    template = make_template()
    v1 = template.current_version
    v1_before = (v1.subject, v1.body, v1.html, v1.content_hash)
    rendered_v1 = render_version(v1, data)

    v2 = template_update(
        template=template, actor="oscar", body="Hi {{ name }}, hurry: {{ deadline }}."
    )

    assert v2 is not None
    assert v2.number == 2
    assert v2.created_by == "oscar"
    template.refresh_from_db()
    assert template.current_version_id == v2.pk
    assert template.body == v2.body
    v1.refresh_from_db()
    assert (v1.subject, v1.body, v1.html, v1.content_hash) == v1_before
    assert v2.content_hash != v1.content_hash
    assert v2.subject == v1.subject
    assert v2.html == v1.html
    rendered_v2 = render_version(v2, data)
    assert rendered_v2.text == "Hi Ada, hurry: 2026-12-01."
    assert rendered_v2.content_hash != rendered_v1.content_hash
    assert render_version(v1, data) == rendered_v1
    assert AuditRecord.objects.get(kind="template.updated").data["version"] == 2


def test_it_creates_no_version_when_nothing_changes(make_template):
    template = make_template()
    assert template_update(template=template, actor="oscar", body=template.body) is None
    assert TemplateVersion.objects.count() == 1
    assert not AuditRecord.objects.filter(kind="template.updated").exists()


def test_it_changes_settings_without_a_version(make_template):
    template = make_template()
    assert template_update(template=template, actor="oscar", tier=1, description="reminder") is None
    template.refresh_from_db()
    assert (template.tier, template.description) == (1, "reminder")
    assert TemplateVersion.objects.count() == 1
    assert AuditRecord.objects.get(kind="template.updated").data["changed_settings"] == [
        "tier",
        "description",
    ]


def test_it_numbers_versions_in_order(make_template):
    template = make_template()
    for n in range(2, 5):
        version = template_update(template=template, actor="oscar", body=f"Body {n}")
        assert version.number == n
    assert list(template.versions.values_list("number", flat=True)) == [4, 3, 2, 1]


def test_it_validates_an_edit_and_keeps_the_current_version(make_template):
    template = make_template()
    with pytest.raises(ValidationError) as caught:
        template_update(template=template, actor="mallory", body="{% debug %}")
    assert "body" in caught.value.message_dict
    template.refresh_from_db()
    assert template.current_version.number == 1
    assert TemplateVersion.objects.count() == 1


def test_it_refuses_fields_that_are_not_content_or_settings(make_template):
    with pytest.raises(TypeError, match="channel"):
        template_update(template=make_template(), actor="oscar", channel="sms")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"channel": "email", "subject": "", "body": "b"}, "subject"),
        ({"channel": "sms", "subject": "s", "body": "b"}, "subject"),
        ({"channel": "sms", "body": "b", "html": "<p>x</p>"}, "html"),
        ({"channel": "sms", "body": "  "}, "body"),
        ({"channel": "fax", "body": "b"}, "channel"),
        ({"channel": "sms", "body": "b", "locale": "not a locale"}, "locale"),
        ({"channel": "sms", "body": "b", "tier": 7}, "tier"),
        ({"channel": "sms", "body": "{{ x|bogus }}"}, "body"),
        ({"channel": "sms", "body": "{% if x %}"}, "body"),
    ],
)
def test_it_validates_a_new_template_per_field(db, fields, field):
    with pytest.raises(ValidationError) as caught:
        template_create(key="k", actor="olivia", **fields)
    assert field in caught.value.message_dict
