"""Writing lineage rows. Every state change of an event or message calls one of these in the
same transaction as the change itself, so the lineage can never disagree with the state."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from audit.models import AuditRecord
from comcenter.lib.context import get_request_id


def audit_build(
    *,
    kind: str,
    request_id: str = "",
    event_uid: uuid.UUID | None = None,
    message_uid: uuid.UUID | None = None,
    recipient_id: str = "",
    actor: str = "",
    data: dict[str, Any] | None = None,
) -> AuditRecord:
    """An unsaved lineage row; the request id defaults to the one bound to this context."""
    return AuditRecord(
        kind=kind,
        request_id=request_id or get_request_id(),
        event_uid=event_uid,
        message_uid=message_uid,
        recipient_id=recipient_id,
        actor=actor,
        data=data or {},
    )


def audit_append(**fields: Any) -> None:
    """Insert one lineage row (keyword arguments of `audit_build`)."""
    audit_build(**fields).save(force_insert=True)


def audit_append_many(records: Iterable[AuditRecord]) -> None:
    AuditRecord.objects.bulk_create(list(records))
