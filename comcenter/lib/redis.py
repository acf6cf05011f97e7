"""One Redis client per process for the hot paths (throttle counters, the canary's latency
window), so a call costs one round trip and no client construction (the throttle makes one
per quota chunk, not per request: identity/throttles.py)."""

from __future__ import annotations

from functools import cache

import redis
from django.conf import settings

# Short timeouts: these calls sit on the ack path, which must not hang on a slow Redis.
_TIMEOUT = 0.25


@cache
def redis_for_url(url: str) -> redis.Redis:
    """One client per URL and process. redis-py's pool notices a fork (pid check) and
    reconnects, so this is safe across gunicorn and django-q2 worker forks."""
    return redis.Redis.from_url(url, socket_connect_timeout=_TIMEOUT, socket_timeout=_TIMEOUT)


def shared_redis() -> redis.Redis | None:
    """The Redis of REDIS_URL, or None on the embedded default (no Redis)."""
    return redis_for_url(settings.REDIS_URL) if settings.REDIS_URL else None
