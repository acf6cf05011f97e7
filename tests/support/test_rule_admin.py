"""The rules in the admin: edits are audited, the "test this rule" preview classifies a
sample ticket without storing anything, and both check the user's permissions."""

from __future__ import annotations

from django.contrib.auth.models import Permission, User

from audit.models import AuditRecord
from support.models import Rule, Ticket


def preview_url(rule: Rule) -> str:
    return f"/admin/support/rule/{rule.pk}/test/"


def test_it_previews_a_rule_on_a_sample_ticket(olivia, support_demo):
    rule = Rule.objects.get(name="Returns and refunds")
    page = olivia.post(
        preview_url(rule), {"subject": "Where is my parcel?", "body": "", "channel": "email"}
    )
    assert page.status_code == 200
    assert "This rule does not match" in page.content.decode()

    page = olivia.post(preview_url(rule), {"subject": "RÉFUND?", "body": "", "channel": "email"})
    html = page.content.decode()
    assert "This rule matches" in html
    assert "Intent <strong>returns</strong>" in html
    assert "Returns and refunds" in html
    assert Ticket.objects.count() == 0


def test_it_says_when_a_rule_of_higher_priority_wins(olivia, support_demo):
    rule = Rule.objects.get(name="Order status")
    page = olivia.post(
        preview_url(rule),
        {"subject": "Tracking says delivered but never arrived", "channel": "chat"},
    )
    html = page.content.decode()
    assert "This rule matches" in html
    assert "Delivered, not received" in html
    assert "A rule of higher priority wins." in html


def test_it_audits_a_rule_edit_with_the_changed_fields(olivia, support_demo):
    rule = Rule.objects.get(name="Sales enquiries")
    page = olivia.get(f"/admin/support/rule/{rule.pk}/change/")
    form = page.context["adminform"].form
    data = {name: form.initial.get(name) for name in form.fields}
    data = {k: ("" if v is None else v) for k, v in data.items()}
    data["requires_order_number"] = ""
    data["enabled"] = "on"
    data["team"] = "Key Accounts"
    response = olivia.post(f"/admin/support/rule/{rule.pk}/change/", data)

    assert response.status_code == 302
    rule.refresh_from_db()
    assert rule.team == "Key Accounts"
    [row] = AuditRecord.objects.filter(kind="support.rule_changed")
    assert (row.actor, row.data["fields"]) == ("olivia", {"team": "Key Accounts"})


def test_it_refuses_the_preview_without_permission_and_to_anonymous_visitors(client, support_demo):
    rule = Rule.objects.first()
    anonymous = client.post(preview_url(rule), {"subject": "refund", "channel": "email"})
    assert anonymous.status_code == 302
    assert "/admin/login/" in anonymous["Location"]

    mallory = User.objects.create_user("mallory", password="pw-mallory-1234", is_staff=True)
    client.force_login(mallory)
    assert client.post(preview_url(rule), {"subject": "x", "channel": "email"}).status_code == 403
    assert client.get(f"/admin/support/rule/{rule.pk}/change/").status_code == 403

    mallory.user_permissions.add(Permission.objects.get(codename="view_rule"))
    viewer = client.post(preview_url(rule), {"subject": "refund", "channel": "email"})
    assert viewer.status_code == 200
    edit = client.post(f"/admin/support/rule/{rule.pk}/change/", {"name": "hijacked"})
    assert edit.status_code == 403
    assert Rule.objects.filter(name="hijacked").count() == 0
