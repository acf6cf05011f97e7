"""Operator edits an auditor needs in the chain: suppressions lifted, event types edited."""

from __future__ import annotations

import hashlib

from audit.models import AuditRecord
from delivery.models import Suppression
from delivery.suppressions import suppression_add
from events.models import EventType
from events.services import known_event_types


def lineage(kind: str) -> list[AuditRecord]:
    return list(AuditRecord.objects.filter(kind=kind).order_by("id"))


def test_it_audits_a_suppression_lifted_in_the_admin_without_the_address(olivia, db):
    suppression_add(channel="email", address="a@example.org", reason="opt_out", actor="x")
    row = Suppression.objects.get()

    response = olivia.post(f"/admin/delivery/suppression/{row.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Suppression.objects.exists()
    [removed] = lineage("suppression.removed")
    assert removed.actor == "olivia"
    assert removed.data == {
        "suppression": row.pk,
        "channel": "email",
        "reason": "opt_out",
        "address_sha256": hashlib.sha256(b"a@example.org").hexdigest(),
    }
    assert "a@example.org" not in str(removed.data)


def test_it_audits_each_suppression_lifted_by_the_bulk_delete_action(olivia, db):
    for address in ("a@example.org", "b@example.org"):
        suppression_add(channel="email", address=address, reason="bounce", actor="x")
    ids = list(Suppression.objects.values_list("pk", flat=True))

    response = olivia.post(
        "/admin/delivery/suppression/",
        {"action": "delete_selected", "_selected_action": ids, "post": "yes"},
    )

    assert response.status_code == 302
    assert not Suppression.objects.exists()
    assert sorted(r.data["suppression"] for r in lineage("suppression.removed")) == sorted(ids)


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
