"""Verifying the events received while the identity provider's keys were unavailable.

`pending_verify` runs every minute (settings.PERIODIC_TASKS) and as soon as a fetch of the
JWKS succeeds after a failure (the `identity.jwks.keys_recovered` signal). Events are taken
in receipt order and judged by `identity.pending.pending_token_verdict`: a verified one goes
into delivery (outbox pending), a failed one is rejected with its reason in the audit
lineage.

Race-free with several workers: each outcome is a conditional UPDATE on
`status=auth_pending` (events.services), so of two workers verifying the same event exactly
one changes it and writes the lineage row.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db.models import Q
from django_q.tasks import async_task

from events.models import Event, EventStatus, OutboxState
from events.services import event_reject_pending, event_release_held, event_release_verified
from identity.auth import record_auth_failure
from identity.jwks import key_source, keys_usable
from identity.pending import pending_token_verdict

log = logging.getLogger(__name__)

VERIFIER = "system:idp-verifier"
BATCH_SIZE = 200


# What waits for verification: auth_pending events, and accepted events held behind one of
# their ordering key (each set has its partial index).
_WAITING = (
    Q(status=EventStatus.AUTH_PENDING),
    Q(status=EventStatus.ACCEPTED, outbox_state=OutboxState.HELD),
)


def pending_verify() -> dict[str, int]:
    """Periodic task: release or reject `auth_pending` events, and release the accepted
    events that waited behind them; returns the counts."""
    counts = {"released": 0, "rejected": 0, "waiting": 0}
    pending, held = (Event.objects.filter(q).exists() for q in _WAITING)
    if not (pending or held):
        return counts
    if pending:
        if not settings.JWKS_URL:
            log.warning("auth_pending events exist but JWKS_URL is unset: they cannot be verified")
            return counts
        # The background refresh of this tick; when it fails, cached keys still verify what
        # they can.
        key_source().refresh(wake_verifier=False)
    # A key whose earlier event still waits keeps its later events waiting too, so that
    # verification never reorders the events of one ordering key.
    blocked: set[str] = set()
    for event in _waiting_in_receipt_order():
        if event.ordering_key in blocked:
            counts["waiting"] += 1
        elif event.status == EventStatus.ACCEPTED:
            counts["released"] += event_release_held(event=event, actor=VERIFIER)
        else:
            _settle(event, counts, blocked)
    if any(counts.values()):
        log.info("auth_pending events verified", extra=counts)
    return counts


def _settle(event: Event, counts: dict[str, int], blocked: set[str]) -> None:
    action, reason = pending_token_verdict(
        token=event.pending_token,
        caller_id=event.caller,
        received_at=event.received_at.timestamp(),
    )
    if action == "wait":
        blocked.add(event.ordering_key)
        counts["waiting"] += 1
    elif action == "release":
        outcome = event_release_verified(event=event, actor=VERIFIER)
        if outcome:
            counts["released" if outcome == "released" else "rejected"] += 1
    else:
        record_auth_failure(reason.split(":", 1)[0])
        counts["rejected"] += event_reject_pending(event=event, reason=reason, actor=VERIFIER)


def _waiting_in_receipt_order() -> Iterator[Event]:
    last_id = 0
    while True:
        batch = list(
            Event.objects.filter(_WAITING[0] | _WAITING[1], id__gt=last_id).order_by("id")[
                :BATCH_SIZE
            ]
        )
        if not batch:
            return
        yield from batch
        last_id = batch[-1].id


def pending_verify_wake(**_: Any) -> None:
    """Receiver of `identity.jwks.keys_recovered`: verify the events received meanwhile now,
    not at the next tick."""
    if not Event.objects.filter(status=EventStatus.AUTH_PENDING).exists():
        return
    try:
        async_task("events.pending.pending_verify", q_options={"group": "auth-pending"})
    except Exception:
        log.warning(
            "jwks: could not queue the verification of pending events; the periodic task will"
        )


def receive_and_queue_active() -> bool:
    """For /canary: True while identity-provider tokens are received into `auth_pending`
    (no usable keys) or events so received still wait for verification."""
    if not settings.JWKS_URL:
        return False
    if not keys_usable():
        return True
    return Event.objects.filter(status=EventStatus.AUTH_PENDING).exists()
