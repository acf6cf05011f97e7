"""A circuit breaker per provider: an outage is detected once, its messages wait without
spending attempts, and they go out within seconds of the recovery.

- **Trip**: a send that finds the provider unreachable (connection refused or reset, a
  timeout, a gateway's 502/503/504) opens the provider's circuit for PROVIDER_PROBE_SECONDS.
  That one message spends an attempt; the rest of its batch goes back in line without one
  (pending, due at the circuit's probe time).
- **Open**: no worker claims the provider's messages (one indexed read per batch).
- **Probe**: once `open_until` has passed, a batch of one message is claimed. A failure
  re-opens the circuit; a success closes it and makes the messages that failed during the
  outage (retrying, with backoff) due at once, so the backlog drains within seconds of the
  recovery instead of after the backoff of each.
The row is shared by every worker and node (delivery_providercircuit); trips and closes are
single statements, so concurrent workers agree."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models.functions import Now

from comcenter.lib.db import db_now
from delivery.models import Message, MessageState, ProviderCircuit
from delivery.providers.base import CODE_CONNECTION, CODE_TIMEOUT, ProviderError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CircuitState:
    open: bool  # claim nothing
    probing: bool  # claim one message, the probe


CLOSED = CircuitState(open=False, probing=False)


# Answers that say the provider (not this message) is unavailable: an HTTP gateway's
# 502/503/504. A 451 or 421 for one mailbox (greylisting, a per-recipient limit) or a 429 is
# not an outage: the other messages may well go through.
_DOWN_CODES = frozenset({"502", "503", "504"})


def provider_down(error: ProviderError) -> bool:
    """Whether a failed send says the provider is down (the circuit trips on it)."""
    if error.permanent:
        return False
    code = error.response_code
    return code in (CODE_CONNECTION, CODE_TIMEOUT) or code.split(":")[0] in _DOWN_CODES


def circuit_state(*, provider: str) -> CircuitState:
    row = ProviderCircuit.objects.filter(provider=provider).values_list("open_until").first()
    if row is None:
        return CLOSED
    if row[0] > db_now():
        return CircuitState(open=True, probing=False)
    return CircuitState(open=False, probing=True)


def circuit_trip(*, provider: str) -> datetime:
    """Open (or keep open) the provider's circuit; returns when it may be probed."""
    now = db_now()
    until = now + timedelta(seconds=settings.PROVIDER_PROBE_SECONDS)
    updated = ProviderCircuit.objects.filter(provider=provider).update(open_until=until)
    if not updated:
        ProviderCircuit.objects.get_or_create(
            provider=provider, defaults={"opened_at": now, "open_until": until}
        )
        log.warning("provider down: circuit opened", extra={"provider": provider})
    return until


def circuit_close(*, provider: str, channel: str) -> int:
    """Close the provider's circuit after a successful send; release the messages that failed
    during the outage. Returns how many were released."""
    row = ProviderCircuit.objects.filter(provider=provider).first()
    if row is None:
        return 0
    if not ProviderCircuit.objects.filter(provider=provider, opened_at=row.opened_at).delete()[0]:
        return 0  # another worker closed it
    # Failures just before the trip (other workers' batches) count as the outage too.
    since = row.opened_at - timedelta(seconds=settings.DISPATCH_LEASE_SECONDS)
    released = Message.objects.filter(
        channel=channel,
        provider=provider,
        state=MessageState.RETRYING,
        updated_at__gte=since,
        next_attempt_at__gt=Now(),
    ).update(next_attempt_at=Now())
    log.warning("provider back: circuit closed", extra={"provider": provider, "released": released})
    return released
