"""The delivery screens: routes editable, messages and attempts read-only, and the
dead-letter queue with its requeue and discard actions."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User

from audit.models import AuditRecord
from delivery.admin import KILL_SWITCH_WARNING
from delivery.models import Attempt, Message, Route, Suppression
from templates.services import template_set_enabled
from tests.delivery.conftest import run_pump, set_flag

DLQ = "/admin/delivery/deadletter/"
MESSAGES = "/admin/delivery/message/"


@pytest.fixture
def victor(db, client):
    """Staff who may look at messages and the dead-letter queue but change nothing."""
    user = User.objects.create_user("victor", "victor@example.org", "pw", is_staff=True)
    for codename in ("view_message", "view_deadletter", "view_attempt", "view_route"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(user)
    return client


@pytest.fixture
def dead(email_only, accept, live, smtp_server):
    smtp_server.reply_for("ada@example.org", 554)  # 5.7.1: the message, not the address
    events = [accept(), accept(), accept()]
    run_pump()
    smtp_server.clear_reply("ada@example.org")
    return [Message.objects.get(event=e) for e in events]


def test_every_delivery_page_opens(olivia, dead):
    message = dead[0]
    attempt = Attempt.objects.filter(message=message).first()
    route = Route.objects.first()
    pages = [
        "/admin/delivery/route/",
        "/admin/delivery/route/add/",
        f"/admin/delivery/route/{route.pk}/change/",
        "/admin/delivery/message/",
        f"/admin/delivery/message/{message.pk}/change/",
        DLQ,
        f"{DLQ}{message.pk}/change/",
        "/admin/delivery/attempt/",
        f"/admin/delivery/attempt/{attempt.pk}/change/",
        "/admin/delivery/suppression/",
        "/admin/delivery/suppression/add/",
    ]
    for url in pages:
        assert olivia.get(url).status_code == 200, url


def test_it_finds_messages_by_event_recipient_state_and_template(olivia, dead):
    message = dead[0]
    for term in (message.event.uid, "student-42", "dead", "deadline_soon_email"):
        response = olivia.get("/admin/delivery/message/", {"q": str(term)})
        assert message in response.context["cl"].result_list, term
    response = olivia.get("/admin/delivery/message/", {"q": "no-such-recipient"})
    assert list(response.context["cl"].result_list) == []


def test_the_dead_letter_screen_lists_dead_messages_only(olivia, dead):
    Message.objects.filter(pk=dead[2].pk).update(state="sent")

    response = olivia.get(DLQ)

    assert {m.pk for m in response.context["cl"].result_list} == {dead[0].pk, dead[1].pk}


def test_the_requeue_action_requeues_and_reports_a_count(olivia, dead):
    response = olivia.post(
        DLQ,
        {"action": "requeue", "_selected_action": [dead[0].pk, dead[1].pk]},
        follow=True,
    )

    assert "Requeued 2 dead message(s)." in [str(m) for m in response.context["messages"]]
    assert Message.objects.get(pk=dead[0].pk).state == "pending"
    assert Message.objects.get(pk=dead[2].pk).state == "dead"
    assert AuditRecord.objects.filter(kind="message.pending", actor="olivia").count() == 2


def test_the_discard_action_asks_first_and_deletes_nothing_until_confirmed(olivia, dead):
    response = olivia.post(DLQ, {"action": "discard", "_selected_action": [dead[0].pk, dead[1].pk]})

    assert response.status_code == 200
    assert "Discarding deletes 2 dead message(s)" in response.text
    assert str(dead[0].uid) in response.text
    assert Message.objects.filter(pk__in=[dead[0].pk, dead[1].pk]).count() == 2
    assert not AuditRecord.objects.filter(kind="message.discarded").exists()


def test_the_discard_action_deletes_and_reports_a_count(olivia, dead):
    response = olivia.post(
        DLQ,
        {"action": "discard", "_selected_action": [dead[0].pk], "post": "yes"},
        follow=True,
    )

    assert "Discarded 1 dead message(s)." in [str(m) for m in response.context["messages"]]
    assert not Message.objects.filter(pk=dead[0].pk).exists()


def test_a_viewer_cannot_requeue_or_edit(victor, dead):
    response = victor.get(DLQ)
    assert response.status_code == 200
    assert response.context["action_form"] is None  # no action this user may run

    victor.post(DLQ, {"action": "requeue", "_selected_action": [dead[0].pk]})

    assert Message.objects.get(pk=dead[0].pk).state == "dead"
    assert victor.post(f"/admin/delivery/message/{dead[0].pk}/change/", {}).status_code == 403


def test_messages_and_attempts_are_read_only(olivia, dead):
    message = dead[0]

    olivia.post(f"/admin/delivery/message/{message.pk}/change/", {"state": "sent"})
    olivia.post(f"/admin/delivery/message/{message.pk}/delete/", {"post": "yes"})

    message.refresh_from_db()
    assert message.state == "dead"
    assert olivia.get("/admin/delivery/message/add/").status_code == 403
    assert olivia.get("/admin/delivery/attempt/add/").status_code == 403


def test_an_operator_edits_a_route_with_lineage(olivia, routes):
    route = Route.objects.get(channel="sms")
    response = olivia.post(
        f"/admin/delivery/route/{route.pk}/change/",
        {
            "event_type": route.event_type,
            "template_key": route.template_key,
            "channel": "sms",
            "position": 5,
            "enabled": "",
            "description": "paused for the campaign",
        },
    )

    assert response.status_code == 302
    route.refresh_from_db()
    assert (route.enabled, route.position) == (False, 5)
    change = AuditRecord.objects.get(kind="route.changed")
    assert (change.actor, change.data["enabled"]) == ("olivia", False)


def test_an_operator_adds_a_suppression(olivia, db):
    response = olivia.post(
        "/admin/delivery/suppression/add/",
        {
            "channel": "email",
            "address": "Someone@Example.org",
            "category": "promotional",
            "reason": "opt_out",
            "note": "",
        },
    )

    assert response.status_code == 302
    row = Suppression.objects.get()
    assert (row.address, row.category, row.source) == (
        "someone@example.org",
        "promotional",
        "admin:olivia",
    )
    added = AuditRecord.objects.get(kind="suppression.added")
    assert (added.actor, added.data["source"], added.data["category"]) == (
        "olivia",
        "admin:olivia",
        "promotional",
    )


def test_the_admin_refuses_an_address_that_is_not_one_of_the_channel(olivia, db):
    response = olivia.post(
        "/admin/delivery/suppression/add/",
        {"channel": "sms", "address": "0201234567", "category": "all", "reason": "manual"},
    )

    assert response.status_code == 200
    assert "E.164" in response.context["adminform"].form.errors["address"][0]
    assert not Suppression.objects.exists()


def test_a_dead_message_page_requeues_it_with_one_post(olivia, dead):
    page = olivia.get(f"{DLQ}{dead[0].pk}/change/")
    assert 'id="row-requeue"' in page.text
    assert 'id="row-discard"' in page.text

    response = olivia.post(f"{DLQ}{dead[0].pk}/requeue/", follow=True)

    assert response.redirect_chain[0] == (DLQ, 302)
    assert "Requeued 1 dead message(s)." in [str(m) for m in response.context["messages"]]
    assert Message.objects.get(pk=dead[0].pk).state == "pending"
    assert Message.objects.get(pk=dead[1].pk).state == "dead"
    row = AuditRecord.objects.filter(message_uid=dead[0].uid, kind="message.pending").latest("id")
    assert (row.actor, row.data["from"]) == ("olivia", "dead")


def test_a_dead_message_page_discards_only_after_confirmation(olivia, dead):
    url = f"{DLQ}{dead[0].pk}/discard/"

    asked = olivia.post(url)

    assert asked.status_code == 200
    assert "Discarding deletes 1 dead message(s)" in asked.text
    assert Message.objects.filter(pk=dead[0].pk).exists()

    done = olivia.post(url, {"post": "yes"}, follow=True)

    assert "Discarded 1 dead message(s)." in [str(m) for m in done.context["messages"]]
    assert not Message.objects.filter(pk=dead[0].pk).exists()
    assert Message.objects.filter(pk=dead[1].pk).exists()
    assert AuditRecord.objects.get(kind="message.discarded").actor == "olivia"


def test_requeue_warns_while_the_kill_switch_is_on(olivia, dead):
    set_flag("DISABLE_SEND", True)

    page = olivia.get(f"{DLQ}{dead[0].pk}/change/")
    listed = olivia.post(DLQ, {"action": "requeue", "_selected_action": [dead[1].pk]}, follow=True)
    row = olivia.post(f"{DLQ}{dead[0].pk}/requeue/", follow=True)

    assert 'id="requeue-kill-switch-warning"' in page.text
    for response in (listed, row):
        assert KILL_SWITCH_WARNING in [str(m) for m in response.context["messages"]]


def test_the_row_buttons_are_post_only_and_refused_to_a_viewer(victor, dead):
    url = f"{DLQ}{dead[0].pk}/requeue/"

    assert victor.get(url).status_code == 405
    assert 'id="row-requeue"' not in victor.get(f"{DLQ}{dead[0].pk}/change/").text
    assert victor.post(url).status_code == 403
    assert victor.post(f"{DLQ}{dead[0].pk}/discard/", {"post": "yes"}).status_code == 403
    assert Message.objects.get(pk=dead[0].pk).state == "dead"


def test_a_row_button_on_a_message_that_left_the_queue_changes_nothing(olivia, dead):
    Message.objects.filter(pk=dead[0].pk).update(state="sent")

    response = olivia.post(f"{DLQ}{dead[0].pk}/requeue/", follow=True)

    assert response.redirect_chain == [(DLQ, 302)]
    assert [str(m) for m in response.context["messages"]] == [
        "That dead letter is no longer here; nothing was changed."
    ]
    assert Message.objects.get(pk=dead[0].pk).state == "sent"
    assert not AuditRecord.objects.filter(message_uid=dead[0].uid, data__from="sent").exists()


@pytest.fixture
def blocked(email_only, accept, live, smtp_server):
    """Two messages blocked by a disabled template, which is then enabled again."""
    template_set_enabled(template=email_only, value=False, actor="setup")
    events = [accept(), accept()]
    run_pump()
    template_set_enabled(template=email_only, value=True, actor="setup")
    messages = [Message.objects.get(event=e) for e in events]
    assert {m.state for m in messages} == {"blocked"}
    return messages


def test_the_messages_list_requeues_blocked_messages_and_names_the_refused(olivia, blocked):
    Message.objects.filter(pk=blocked[1].pk).update(last_error="PROMO_SENDS is off")

    response = olivia.post(
        MESSAGES,
        {"action": "requeue_blocked", "_selected_action": [m.pk for m in blocked]},
        follow=True,
    )

    shown = [str(m) for m in response.context["messages"]]
    assert "Requeued 1 blocked message(s)." in shown
    assert any(s.startswith("Not requeued, 1 message(s): blocked by a flag") for s in shown)
    assert str(blocked[1].uid)[:8] in " ".join(shown)
    assert [Message.objects.get(pk=m.pk).state for m in blocked] == ["pending", "blocked"]


def test_a_blocked_message_page_requeues_it(olivia, blocked):
    url = f"{MESSAGES}{blocked[0].pk}/change/"
    assert 'id="row-requeue"' in olivia.get(url).text

    response = olivia.post(f"{MESSAGES}{blocked[0].pk}/requeue/", follow=True)

    assert response.redirect_chain[0] == (url, 302)
    assert Message.objects.get(pk=blocked[0].pk).state == "pending"
    assert 'id="row-requeue"' not in olivia.get(url).text  # pending now: nothing to requeue


def test_a_blocked_message_page_refuses_while_the_template_is_disabled(olivia, blocked, email_only):
    template_set_enabled(template=email_only, value=False, actor="olivia")

    response = olivia.post(f"{MESSAGES}{blocked[0].pk}/requeue/", follow=True)

    assert [str(m) for m in response.context["messages"]] == [
        f"Not requeued, 1 message(s): its template is still disabled ({str(blocked[0].uid)[:8]})."
    ]
    assert Message.objects.get(pk=blocked[0].pk).state == "blocked"


def test_a_viewer_cannot_requeue_blocked_messages(victor, blocked):
    victor.post(MESSAGES, {"action": "requeue_blocked", "_selected_action": [blocked[0].pk]})

    assert victor.post(f"{MESSAGES}{blocked[0].pk}/requeue/").status_code == 403
    assert Message.objects.get(pk=blocked[0].pk).state == "blocked"


def test_an_auditor_reads_a_suppressions_category_reason_source_and_address(db, client):
    from django.contrib.auth.models import Group
    from django.core.management import call_command

    from delivery.suppressions import suppression_add

    call_command("setup_roles", verbosity=0)
    suppression_add(
        channel="sms",
        address="+12025550123",
        reason="opt_out",
        actor="provider:twilio",
        category="promotional",
    )
    row = Suppression.objects.get()
    auditor = User.objects.create_user("audrey", is_staff=True)
    auditor.groups.add(Group.objects.get(name="Auditor"))
    client.force_login(auditor)

    listing = client.get("/admin/delivery/suppression/", {"q": "+12025550123"})
    page = client.get(f"/admin/delivery/suppression/{row.pk}/change/")
    lift = client.get(f"/admin/delivery/suppression/{row.pk}/delete/")

    assert listing.status_code == page.status_code == 200
    assert list(listing.context["cl"].result_list) == [row]
    text = listing.content.decode()
    for shown in ("+12025550123", "promotional messages only", "Opt Out", "provider:twilio"):
        assert shown in text, shown
    assert "provider:twilio" in page.content.decode()
    assert 'name="action"' not in text  # no lifting action offered to a reader
    assert lift.status_code == 403
