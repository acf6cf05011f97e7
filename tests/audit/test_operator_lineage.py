"""Operator edits an auditor needs in the chain: suppressions lifted, event types edited."""

from __future__ import annotations

import hashlib

import pytest

from audit.models import AuditRecord
from delivery.models import Suppression
from delivery.suppressions import suppression_add, suppression_remove
from events.models import EventType
from events.services import known_event_types


def lineage(kind: str) -> list[AuditRecord]:
    return list(AuditRecord.objects.filter(kind=kind).order_by("id"))


def test_it_audits_a_suppression_lifted_in_the_admin_without_the_address(olivia, db):
    suppression_add(channel="email", address="a@example.org", reason="opt_out", actor="x")
    row = Suppression.objects.get()

    response = olivia.post(
        f"/admin/delivery/suppression/{row.pk}/delete/",
        {"post": "yes", "reason": "  asked by the recipient on ticket 812  "},
    )

    assert response.status_code == 302
    assert not Suppression.objects.exists()
    [removed] = lineage("suppression.removed")
    assert removed.actor == "olivia"
    assert removed.data == {
        "suppression": row.pk,
        "channel": "email",
        "category": "all",
        "reason": "opt_out",
        "removal_reason": "asked by the recipient on ticket 812",
        "address_sha256": hashlib.sha256(b"a@example.org").hexdigest(),
    }
    assert "a@example.org" not in str(removed.data)


def test_it_refuses_to_lift_a_suppression_in_the_admin_without_a_reason(olivia, db):
    suppression_add(channel="email", address="a@example.org", reason="opt_out", actor="x")
    row = Suppression.objects.get()

    asked = olivia.get(f"/admin/delivery/suppression/{row.pk}/delete/")
    refused = olivia.post(
        f"/admin/delivery/suppression/{row.pk}/delete/", {"post": "yes", "reason": "   "}
    )

    assert asked.status_code == 200
    assert b'name="reason"' in asked.content
    assert refused.status_code == 200
    assert refused.context["form"].errors == {"reason": ["This field is required."]}
    assert Suppression.objects.filter(pk=row.pk).exists()
    assert lineage("suppression.removed") == []


def test_a_second_lift_of_the_same_suppression_writes_nothing(db):
    suppression_add(channel="sms", address="+12025550123", reason="opt_out", actor="x")
    first, stale = Suppression.objects.get(), Suppression.objects.get()

    assert suppression_remove(suppression=first, actor="a", reason="START received") is True
    assert suppression_remove(suppression=stale, actor="b", reason="START received") is False
    with pytest.raises(ValueError, match="needs a reason"):
        suppression_remove(suppression=stale, actor="b", reason=" ")

    assert [r.actor for r in lineage("suppression.removed")] == ["a"]


def test_it_audits_each_suppression_lifted_by_the_bulk_action_with_its_reason(olivia, db):
    for address in ("a@example.org", "b@example.org"):
        suppression_add(channel="email", address=address, reason="bounce", actor="x")
    ids = list(Suppression.objects.values_list("pk", flat=True))
    selected = {"action": "delete_selected", "_selected_action": ids}

    confirmation = olivia.post("/admin/delivery/suppression/", selected)
    without_reason = olivia.post("/admin/delivery/suppression/", {**selected, "post": "yes"})
    assert Suppression.objects.count() == 2
    response = olivia.post(
        "/admin/delivery/suppression/",
        {**selected, "post": "yes", "reason": "mailbox fixed by the provider"},
    )

    assert confirmation.status_code == without_reason.status_code == 200
    assert b"a@example.org" in confirmation.content
    assert response.status_code == 302
    assert not Suppression.objects.exists()
    removed = lineage("suppression.removed")
    assert sorted(r.data["suppression"] for r in removed) == sorted(ids)
    assert {r.data["removal_reason"] for r in removed} == {"mailbox fixed by the provider"}


def test_it_audits_event_types_added_changed_and_deleted(olivia, db):
    olivia.post("/admin/events/eventtype/add/", {"name": "order.shipped", "description": ""})
    event_type = EventType.objects.get(name="order.shipped")
    assert "order.shipped" in known_event_types()

    olivia.post(
        f"/admin/events/eventtype/{event_type.pk}/change/",
        {"name": "order.sent", "description": "renamed"},
    )
    olivia.post(f"/admin/events/eventtype/{event_type.pk}/delete/", {"post": "yes"})

    assert not EventType.objects.exists()
    assert "order.sent" not in known_event_types()
    [created] = lineage("event_type.created")
    [changed] = lineage("event_type.changed")
    [deleted] = lineage("event_type.deleted")
    assert (created.actor, created.data["name"]) == ("olivia", "order.shipped")
    assert changed.data["previous"] == {"name": "order.shipped", "description": ""}
    assert (changed.data["name"], changed.data["description"]) == ("order.sent", "renamed")
    assert deleted.data == {"event_type": event_type.pk, "name": "order.sent"}
