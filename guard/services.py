"""The guard's actions: sample, evaluate, trip (flag + incident + audit + log + metric), and
the operator's resolve. The guard never lowers a flag; only `incident_resolve` does."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models.functions import Now

from audit.services import audit_append
from comcenter.lib.metrics import GUARD_TRIPS
from flags.models import FlagSource
from flags.services import flag_set, flag_states
from guard.measurements import measurement_add, measurements_purge
from guard.models import GuardSwitch, Incident, IncidentState
from guard.triggers import Reading, readings

log = logging.getLogger(__name__)

GUARD_ACTOR = "guard"
GUARD_LEASE = "guard"


class IncidentNotOpen(ValueError):
    pass


def _flag_effective(name: str) -> bool:
    """Read fresh, not from the per-process cache: the guard decides on the current value."""
    return next(state.effective for state in flag_states() if state.name == name)


def incident_open(*, reading: Reading) -> Incident | None:
    """Open an incident for a tripped reading and turn its flag on (source `guard`), unless
    an incident of that trigger is open already; None then. Audited, logged at ERROR."""
    try:
        with transaction.atomic():
            if Incident.objects.filter(trigger=reading.trigger, state=IncidentState.OPEN).exists():
                return None
            # Another open incident may have raised this flag already: what counts is the
            # value before the guard, so that resolving the last of them lowers it.
            holder = Incident.objects.filter(flag=reading.flag, state=IncidentState.OPEN).first()
            effective = _flag_effective(reading.flag)
            was_on = holder.flag_was_on if holder is not None else effective
            incident = Incident.objects.create(
                trigger=reading.trigger,
                measured=reading.value if reading.value is not None else 0.0,
                threshold=reading.threshold,
                window_seconds=reading.window_seconds,
                samples=reading.samples,
                flag=reading.flag,
                flag_was_on=was_on,
                detail=reading.detail[:500],
            )
            if not effective:
                flag_set(
                    name=reading.flag,
                    value=True,
                    actor=GUARD_ACTOR,
                    reason=f"guard: incident #{incident.pk} ({reading.trigger}: {reading.detail})"[
                        :500
                    ],
                    source=FlagSource.GUARD,
                )
            audit_append(
                kind="guard.incident_opened",
                actor=GUARD_ACTOR,
                data={"incident": incident.pk, **reading.as_json(), "flag_was_on": was_on},
            )
    except IntegrityError:
        # Another guard run opened this trigger's incident between our check and our insert
        # (the partial unique index): that one stands.
        return None
    GUARD_TRIPS.labels(trigger=reading.trigger).inc()
    log.error(
        "guard tripped",
        extra={
            "incident": incident.pk,
            "trigger": reading.trigger,
            "value": reading.as_json()["value"],
            "threshold": reading.threshold,
            "window_seconds": reading.window_seconds,
            "flag": reading.flag,
            "flag_was_on": was_on,
        },
    )
    return incident


def incident_resolve(*, incident_id: int, actor: str, reason: str) -> Incident:
    """An operator closes an incident. Its flag is lowered when the guard raised it (it was
    off before) and no other open incident holds the same flag; both steps are audited."""
    reason = reason.strip()
    if not reason:
        raise ValueError("a reason is required to resolve an incident")
    with transaction.atomic():
        incident = Incident.objects.select_for_update().get(pk=incident_id)
        if incident.state != IncidentState.OPEN:
            raise IncidentNotOpen(f"incident #{incident_id} is not open")
        incident.state = IncidentState.RESOLVED
        incident.resolved_at = Now()
        incident.resolved_by = actor
        incident.resolution = reason[:500]
        incident.save(update_fields=["state", "resolved_at", "resolved_by", "resolution"])
        others = Incident.objects.filter(flag=incident.flag, state=IncidentState.OPEN).exists()
        lower = not incident.flag_was_on and not others
        audit_append(
            kind="guard.incident_resolved",
            actor=actor,
            data={
                "incident": incident.pk,
                "trigger": incident.trigger,
                "flag": incident.flag,
                "flag_lowered": lower,
                "reason": reason,
            },
        )
        if lower:
            flag_set(
                name=incident.flag,
                value=False,
                actor=actor,
                reason=f"incident #{incident.pk} resolved: {reason}"[:500],
                source=FlagSource.ADMIN,
            )
    incident.refresh_from_db()
    return incident


def _switch_record(enabled: bool) -> None:
    """Audit GUARD_ENABLED once per change, by the first run that sees the new value."""
    with transaction.atomic():
        switch, created = GuardSwitch.objects.select_for_update().get_or_create(
            id=1, defaults={"enabled": enabled}
        )
        if not created and switch.enabled == enabled:
            return
        if not created:
            switch.enabled = enabled
            switch.changed_at = Now()
            switch.save(update_fields=["enabled", "changed_at"])
        audit_append(
            kind="guard.enabled" if enabled else "guard.disabled",
            actor=GUARD_ACTOR,
            data={"GUARD_ENABLED": enabled},
        )
        if not enabled:
            log.warning("guard disabled by GUARD_ENABLED=false: no trigger is evaluated")


def queue_depth() -> int:
    """Messages not yet final (the queue depth of SPEC §8), from the trigger-kept tally: one
    query over a few hundred rows whatever the size of the message table (delivery/tally.py),
    where a COUNT over the active states would scan them on every guard run."""
    from delivery.models import ACTIVE_STATES
    from delivery.tally import message_tally

    counts, _ = message_tally()
    return sum(counts.get(state, 0) for state in ACTIVE_STATES)


def _ready() -> bool:
    from comcenter.health import health_report

    return health_report().ok


def guard_check(*, now: float | None = None) -> dict[str, Any]:
    """One guard run: record a queue depth and a readiness sample, evaluate every trigger,
    trip those over their threshold. Returns the readings and the incidents opened."""
    enabled = bool(settings.GUARD_ENABLED)
    _switch_record(enabled)
    if not enabled:
        return {"enabled": False, "readings": [], "opened": []}
    now = time.time() if now is None else now
    probe_ok = _ready()
    measurement_add(
        {"queue_sum": queue_depth(), "queue_n": 1, "probe_n": 1, "probe_ok": int(probe_ok)},
        at=now,
    )
    current = readings(now=now)
    opened = [incident_open(reading=reading) for reading in current if reading.tripped]
    measurements_purge(now=now)
    return {
        "enabled": True,
        "readings": [reading.as_json() for reading in current],
        "opened": [incident.pk for incident in opened if incident is not None],
    }


def guard_run_if_due() -> dict[str, Any] | None:
    """Run the guard if no node has run it within the last interval; None when not due.

    The lease is taken for most of an interval under a fresh holder and never released, so
    whichever node's ticker or periodic task gets there first runs it and every other node
    skips until it expires: one run per interval, on one node at a time."""
    from delivery.leases import worker_lease_take

    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    seconds = settings.GUARD_INTERVAL_SECONDS * 0.9
    if not worker_lease_take(name=GUARD_LEASE, holder=holder, seconds=seconds):
        return None
    return guard_check()
