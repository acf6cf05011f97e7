"""The lineage screen's search: an event, message, request or recipient id finds exactly the
rows that name it (compared exactly, so that PostgreSQL answers from the indexes)."""

from __future__ import annotations

import uuid
from typing import Any

from django.urls import reverse

from audit.services import audit_append

URL = reverse("admin:audit_auditrecord_changelist")


def kinds(client: Any, term: str) -> list[str]:
    response = client.get(URL, {"q": term})
    assert response.status_code == 200
    return sorted(row.kind for row in response.context["cl"].result_list)


def test_it_finds_the_rows_of_each_kind_of_id(olivia: Any) -> None:
    event, message = uuid.uuid4(), uuid.uuid4()
    audit_append(kind="event.received", event_uid=event, request_id="req-1", recipient_id="u-9")
    audit_append(kind="message.dry_run", event_uid=event, message_uid=message, request_id="req-1")
    audit_append(kind="flag.set", request_id="req-2")

    assert kinds(olivia, str(event)) == ["event.received", "message.dry_run"]
    assert kinds(olivia, f" {message} ") == ["message.dry_run"]
    assert kinds(olivia, str(message).upper()) == ["message.dry_run"]
    assert kinds(olivia, "req-1") == ["event.received", "message.dry_run"]
    assert kinds(olivia, "u-9") == ["event.received"]
    assert kinds(olivia, "u-") == []
