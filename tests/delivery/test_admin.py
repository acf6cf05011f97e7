"""The delivery screens: routes editable, messages and attempts read-only, and the
dead-letter queue with its requeue and discard actions."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User

from audit.models import AuditRecord
from delivery.models import Attempt, Message, Route, Suppression
from tests.delivery.conftest import run_pump

DLQ = "/admin/delivery/deadletter/"


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
        {"channel": "email", "address": "Someone@Example.org", "reason": "opt_out", "note": ""},
    )

    assert response.status_code == 302
    assert Suppression.objects.get().address == "someone@example.org"
