"""Retry policy: when a failed send is tried again."""

from __future__ import annotations

import random

from django.conf import settings

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
