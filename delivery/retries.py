"""Retry policy: whether a failed send is tried again, and when."""

from __future__ import annotations

import random

from django.conf import settings

from delivery.models import MessageState
from delivery.providers.base import ProviderError
from flags.services import flag_is_on

# Full jitter may draw a delay of ~0: a provider that just failed is not asked again within
# the same second (and the consumer's next pass, 0.2 s later, does not resend at once).
RETRY_MIN_SECONDS = 1.0


def retry_delay(*, attempt: int, retry_after: float | None = None) -> float:
    """Seconds before retry number `attempt` + 1: exponential backoff with full jitter,
    uniform in [RETRY_MIN_SECONDS, min(cap, base * 2^(attempt-1))], never sooner than the
    provider's Retry-After."""
    ceiling = min(
        settings.RETRY_CAP_SECONDS, settings.RETRY_BASE_SECONDS * 2 ** max(0, attempt - 1)
    )
    delay = random.uniform(min(RETRY_MIN_SECONDS, ceiling), ceiling)
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return delay


def retry_decision(*, error: ProviderError, number: int) -> tuple[str, str, float | None]:
    """(state, reason, seconds until the retry or None) after failed attempt `number`:
    permanent errors never retry, nor does anything while RETRIES_ENABLED is off or once
    RETRY_MAX_ATTEMPTS are spent."""
    if error.permanent:
        return MessageState.DEAD, "permanent provider error", None
    if not flag_is_on("RETRIES_ENABLED"):
        return MessageState.DEAD, "RETRIES_ENABLED is off", None
    if number >= settings.RETRY_MAX_ATTEMPTS:
        return MessageState.DEAD, f"gave up after {number} attempts", None
    delay = retry_delay(attempt=number, retry_after=error.retry_after)
    return MessageState.RETRYING, "transient provider error", delay
