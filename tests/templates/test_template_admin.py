"""The templates screens: list, add and edit with validation, preview, history, actions."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from audit.models import AuditRecord
from templates.models import Template, TemplateVersion

LIST = "/admin/templates/template/"


def _edit_form(template: Template, **changes: str) -> dict[str, str]:
    form = {
        "category": template.category,
        "tier": str(template.tier),
        "description": template.description,
        "subject": template.subject,
        "body": template.body,
        "html": template.html,
        "sample_data": '{"name": "Ada", "scholarship": "STEM Futures", "deadline": "2026-12-01"}',
        "versions-TOTAL_FORMS": "0",
        "versions-INITIAL_FORMS": str(template.versions.count()),
        "versions-MIN_NUM_FORMS": "0",
        "versions-MAX_NUM_FORMS": "0",
        "_continue": "1",
    }
    form.update(changes)
    return form


def test_it_opens_the_list_add_and_change_pages(olivia, make_template):
    template = make_template()
    assert olivia.get(LIST).status_code == 200
    assert olivia.get(f"{LIST}add/").status_code == 200
    page = olivia.get(f"{LIST}{template.pk}/change/")
    assert page.status_code == 200
    assert "Version history" in page.text


def test_it_renders_a_preview_with_the_sample_data(olivia, make_template):
    template = make_template(
        sample_data={"name": "Ada <3", "scholarship": "STEM Futures", "deadline": "2026-12-01"}
    )
    page = olivia.get(f"{LIST}{template.pk}/change/")
    assert "STEM Futures closes on 2026-12-01" in page.text
    assert "Hello Ada &lt;3, STEM Futures closes on 2026-12-01." in page.text
    # The HTML part sits in a sandboxed frame, escaped once for the attribute.
    assert '<iframe sandbox="" srcdoc="&lt;p&gt;Hello Ada &amp;lt;3' in page.text


def test_it_shows_a_failing_preview_instead_of_a_500(olivia, make_template):
    template = make_template(sample_data={"name": "Ada"})
    page = olivia.get(f"{LIST}{template.pk}/change/")
    assert page.status_code == 200
    assert "Preview failed: missing variable &#x27;scholarship&#x27;" in page.text


def test_it_saves_an_edit_as_a_new_version(olivia, make_template):
    template = make_template()
    response = olivia.post(
        f"{LIST}{template.pk}/change/", _edit_form(template, body="Hurry, {{ name }}!")
    )
    assert response.status_code == 302, (
        response.context["adminform"].form.errors if response.context else ""
    )
    template.refresh_from_db()
    assert template.current_version.number == 2
    assert template.current_version.body == "Hurry, {{ name }}!"
    assert template.current_version.created_by == "olivia"
    assert TemplateVersion.objects.get(template=template, number=1).body.startswith("Hello")
    assert template.sample_data["name"] == "Ada"
    page = olivia.get(f"{LIST}{template.pk}/change/")
    assert "Saved as version 2." in page.text
    assert "Hurry, Ada!" in page.text


def test_it_makes_no_new_version_when_the_browser_sends_crlf_line_ends(olivia, make_template):
    template = make_template(body="Hello {{ name }},\nsee you.")
    response = olivia.post(
        f"{LIST}{template.pk}/change/", _edit_form(template, body="Hello {{ name }},\r\nsee you.")
    )
    assert response.status_code == 302
    template.refresh_from_db()
    assert template.current_version.number == 1
    assert "The content did not change; no new version." in olivia.get(LIST).text


def test_it_refuses_an_edit_with_a_forbidden_tag(olivia, make_template):
    template = make_template()
    response = olivia.post(f"{LIST}{template.pk}/change/", _edit_form(template, body="{% debug %}"))
    assert response.status_code == 200
    assert (
        "{% debug %} is not allowed (line 1)"
        in response.context["adminform"].form.errors["body"][0]
    )
    template.refresh_from_db()
    assert template.current_version.number == 1


def test_it_refuses_sample_data_that_is_not_an_object(olivia, make_template):
    template = make_template()
    response = olivia.post(
        f"{LIST}{template.pk}/change/", _edit_form(template, sample_data="[1, 2]")
    )
    assert response.status_code == 200
    assert "sample_data" in response.context["adminform"].form.errors


def test_it_creates_a_template_with_version_one(olivia):
    response = olivia.post(
        f"{LIST}add/",
        {
            "key": "welcome_sms",
            "channel": "sms",
            "locale": "pt_BR",
            "category": "transactional",
            "tier": "0",
            "enabled": "on",
            "description": "",
            "subject": "",
            "body": "Olá {{ name }}",
            "html": "",
            "sample_data": '{"name": "Ana"}',
            "versions-TOTAL_FORMS": "0",
            "versions-INITIAL_FORMS": "0",
            "versions-MIN_NUM_FORMS": "0",
            "versions-MAX_NUM_FORMS": "0",
        },
    )
    assert response.status_code == 302
    template = Template.objects.get(key="welcome_sms")
    assert (template.locale, template.whitelisted, template.current_version.number) == (
        "pt-BR",
        False,
        1,
    )
    assert template.current_version.created_by == "olivia"


def test_it_refuses_an_sms_with_a_subject_on_add(olivia):
    response = olivia.post(
        f"{LIST}add/",
        {
            "key": "bad_sms",
            "channel": "sms",
            "locale": "en",
            "category": "transactional",
            "tier": "0",
            "subject": "no subjects in SMS",
            "body": "hi",
            "sample_data": "{}",
            "versions-TOTAL_FORMS": "0",
            "versions-INITIAL_FORMS": "0",
            "versions-MIN_NUM_FORMS": "0",
            "versions-MAX_NUM_FORMS": "0",
        },
    )
    assert response.status_code == 200
    assert "An SMS template has no subject." in response.context["adminform"].form.errors["subject"]
    assert not Template.objects.exists()


@pytest.mark.parametrize(
    ("action", "field", "value", "message"),
    [
        ("whitelist", "whitelisted", True, "2 template(s) whitelisted; 1 already were."),
        ("unwhitelist", "whitelisted", False, "1 template(s) unwhitelisted; 2 already were."),
        ("disable", "enabled", False, "3 template(s) disabled; 0 already were."),
        ("enable", "enabled", True, "0 template(s) enabled; 3 already were."),
    ],
)
def test_it_switches_templates_in_bulk_and_reports_counts(
    olivia, make_template, action, field, value, message
):
    templates = [
        make_template(key="a", whitelisted=True),
        make_template(key="b"),
        make_template(key="c"),
    ]
    selected = {"action": action, "_selected_action": [t.pk for t in templates]}

    response = olivia.post(LIST, {**selected, "reason": "campaign over"}, follow=True)

    assert message in response.text
    assert set(Template.objects.values_list(field, flat=True)) == {value}
    assert {
        r.data["reason"]
        for r in AuditRecord.objects.filter(actor="olivia").exclude(kind="template.created")
    } <= {"campaign over"}


def test_a_list_switch_asks_for_the_reason_first_and_changes_nothing_until_given(
    olivia, make_template
):
    templates = [make_template(key="a"), make_template(key="b")]
    selected = {"action": "disable", "_selected_action": [t.pk for t in templates]}

    asked = olivia.post(LIST, selected)
    refused = olivia.post(LIST, {**selected, "reason": "   "})

    assert asked.status_code == 200
    assert "Disable: 2 template(s). Nothing has changed yet" in asked.text
    assert 'name="reason"' in asked.text
    assert refused.status_code == 400
    assert refused.context["form"].errors == {"reason": ["This field is required."]}
    assert set(Template.objects.values_list("enabled", flat=True)) == {True}
    assert not AuditRecord.objects.filter(kind="template.enabled").exists()


def test_an_operator_disables_one_template_from_its_page_with_a_reason(olivia, make_template):
    template = make_template()
    page = olivia.get(f"{LIST}{template.pk}/change/")
    assert 'id="switch-disable"' in page.text
    assert 'id="switch-enable"' not in page.text  # only the switches that would change it

    response = olivia.post(
        f"{LIST}{template.pk}/switch/", {"switch": "disable", "reason": "wrong deadline"}
    )

    assert response.status_code == 302
    assert response["Location"] == f"{LIST}{template.pk}/change/"
    assert Template.objects.get(pk=template.pk).enabled is False
    record = AuditRecord.objects.get(kind="template.enabled")
    assert (record.actor, record.data["enabled"], record.data["reason"]) == (
        "olivia",
        False,
        "wrong deadline",
    )
    assert 'id="switch-enable"' in olivia.get(f"{LIST}{template.pk}/change/").text


@pytest.mark.parametrize(
    ("data", "errors"),
    [
        ({"switch": "disable"}, {"reason": ["This field is required."]}),
        (
            {"switch": "disable", "reason": "x" * 501},
            {"reason": ["Ensure this value has at most 500 characters (it has 501)."]},
        ),
        (
            {"switch": "explode", "reason": "why"},
            {"switch": ["Select a valid choice. explode is not one of the available choices."]},
        ),
    ],
)
def test_a_page_switch_with_bad_input_is_a_400_that_changes_nothing(
    olivia, make_template, data, errors
):
    template = make_template()

    response = olivia.post(f"{LIST}{template.pk}/switch/", data)

    assert response.status_code == 400
    assert response.context["form"].errors == errors
    assert Template.objects.get(pk=template.pk).enabled is True
    assert not AuditRecord.objects.filter(kind="template.enabled").exists()


def test_a_page_switch_is_post_only_and_needs_the_change_right(olivia, make_template):
    template = make_template()
    audrey = User.objects.create_user("audrey", is_staff=True)
    audrey.groups.add(Group.objects.get(name="Auditor"))
    auditor = Client()
    auditor.force_login(audrey)
    url = f"{LIST}{template.pk}/switch/"

    assert olivia.get(url).status_code == 405
    assert 'id="template-switches"' not in auditor.get(f"{LIST}{template.pk}/change/").text
    assert auditor.post(url, {"switch": "disable", "reason": "x"}).status_code == 403
    assert Template.objects.get(pk=template.pk).enabled is True
    assert (
        olivia.post(f"{LIST}999999/switch/", {"switch": "disable", "reason": "x"}).status_code
        == 302
    )


def test_it_offers_no_delete(olivia, make_template):
    template = make_template()
    assert olivia.get(f"{LIST}{template.pk}/delete/").status_code == 403


def test_it_shows_the_lineage_on_the_history_page(olivia, make_template):
    template = make_template()
    olivia.post(LIST, {"action": "disable", "_selected_action": [template.pk], "reason": "r"})

    response = olivia.get(f"{LIST}{template.pk}/history/")

    assert response.status_code == 200
    assert [record.kind for record in response.context["lineage"]] == [
        "template.enabled",
        "template.created",
    ]
    assert 'id="template-lineage"' in response.text
    assert "enabled=False" in response.text
