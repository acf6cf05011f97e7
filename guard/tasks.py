"""django-q2 entry points of the guard.

A django-q2 schedule runs at most once a minute and SPEC §8 wants a run at least every 15 s,
so the guard rides on the delivery ticker, which loops through each minute anyway:
`guard_due` is one of its TICKER_HOOKS, called every pass, and runs the guard when this
process has not looked for GUARD_INTERVAL_SECONDS (the lease in `guard_run_if_due` then keeps
it to one run per interval across nodes). The `guard` periodic task runs it too, once a
minute, so the guard keeps running even where the ticker does not."""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings

from guard.services import guard_run_if_due

log = logging.getLogger(__name__)

_next_look = 0.0


def guard_due() -> None:
    """Ticker hook: run the guard if an interval has passed here. Never raises (a failing
    guard must not stop the ticker's deliveries); a failure is logged at ERROR."""
    global _next_look
    now = time.monotonic()
    if now < _next_look:
        return
    _next_look = now + settings.GUARD_INTERVAL_SECONDS
    try:
        guard_run_if_due()
    except Exception:
        log.exception("guard run failed")


def guard_tick() -> dict[str, Any] | None:
    """Periodic task (every minute): one guard run if none ran within the interval."""
    return guard_run_if_due()
