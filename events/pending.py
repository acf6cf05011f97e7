"""Verifying the events received while the identity provider's keys were unavailable.

`pending_verify` runs every minute (settings.PERIODIC_TASKS) and as soon as a fetch of the
JWKS succeeds after a failure (events.jwks). Events are taken in receipt order: a verified one
goes into delivery (outbox pending), a failed one is rejected with its reason in the audit
lineage. `exp` and `nbf` are checked against the time the event was received, so an outage
longer than a token's lifetime does not reject honest events.

Race-free with several workers: each outcome is a conditional UPDATE on
`status=auth_pending` (events.services), so of two workers verifying the same event exactly
one changes it and writes the lineage row.
"""

from __future__ import annotations

import logging
from typing import Literal

from django.conf import settings

from events.auth import record_auth_failure
from events.idp import IdpTokenInvalid, idp_token_verify
from events.jwks import key_source
from events.models import Event, EventStatus
from events.services import event_reject_pending, event_release_verified

log = logging.getLogger(__name__)

VERIFIER = "system:idp-verifier"
BATCH_SIZE = 200

Action = Literal["release", "reject", "wait"]


def pending_verify() -> dict[str, int]:
    """Periodic task: release or reject `auth_pending` events; returns the counts."""
    counts = {"released": 0, "rejected": 0, "waiting": 0}
    if not Event.objects.filter(status=EventStatus.AUTH_PENDING).exists():
        return counts
    if not settings.JWKS_URL:
        log.warning("auth_pending events exist but JWKS_URL is unset: they cannot be verified")
        return counts
    # The background refresh of this tick; when it fails, cached keys still verify what
    # they can.
    key_source().refresh(wake_verifier=False)
    # A key whose earlier event still waits keeps its later events waiting too, so that
    # verification never reorders the events of one ordering key.
    blocked: set[str] = set()
    last_id = 0
    while True:
        batch = list(
            Event.objects.filter(status=EventStatus.AUTH_PENDING, id__gt=last_id).order_by("id")[
                :BATCH_SIZE
            ]
        )
        if not batch:
            break
        for event in batch:
            last_id = event.id
            if event.ordering_key in blocked:
                counts["waiting"] += 1
                continue
            action, reason = _verdict(event)
            if action == "wait":
                blocked.add(event.ordering_key)
                counts["waiting"] += 1
            elif action == "release":
                counts["released"] += event_release_verified(event=event, actor=VERIFIER)
            else:
                record_auth_failure(reason.split(":", 1)[0])
                counts["rejected"] += event_reject_pending(
                    event=event, reason=reason, actor=VERIFIER
                )
    if any(counts.values()):
        log.info("auth_pending events verified", extra=counts)
    return counts


def _verdict(event: Event) -> tuple[Action, str]:
    """What to do with one event, and for a rejection why ("<reason code>: <detail>")."""
    if not event.pending_token:
        return "reject", "malformed: no token was kept with the event"
    try:
        result = idp_token_verify(raw=event.pending_token, at=event.received_at.timestamp())
    except IdpTokenInvalid as exc:
        return "reject", f"{exc.reason}: {exc.detail}"
    if not result.verified:
        return "wait", ""
    if result.caller_id != event.caller:
        return "reject", "caller_mismatch: the token names another subject than the event"
    if "events:write" not in result.scopes:
        return "reject", f"missing_role: no {settings.JWT_REQUIRED_ROLE!r} and no events:write"
    return "release", ""
