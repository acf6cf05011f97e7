"""Intake throttles: a fixed-window counter per caller in the shared cache, so the limit holds
across every web process and node, with `Retry-After` on each 429.

DRF's SimpleRateThrottle keeps a list of every request's timestamp in the window and rewrites
it on each request (a read and a write of a growing value), a large share of the ack path
at intake rates (bench/NOTES.md). A fixed window costs one INCR. Its known trade-off: a
burst straddling a window boundary may reach twice the rate for that moment."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from django.core.cache import cache
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from comcenter.lib.redis import shared_redis
from identity.caller import Caller

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView

log = logging.getLogger(__name__)

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """'6000/min' -> (6000, 60)."""
    count, _, period = rate.partition("/")
    return int(count), _PERIODS[period.strip()[:1]]


def window_count(key: str, ttl: int) -> int:
    """Increment the counter `key` (created with `ttl`) and return its new value."""
    client = shared_redis()
    if client is not None:
        pipe = client.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, ttl, nx=True)
        return int(pipe.execute()[0])
    cache.add(key, 0, timeout=ttl)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=ttl)
        return 1


class FixedWindowThrottle(BaseThrottle):
    scope = ""
    rate: str | None = None  # set on a subclass to override DEFAULT_THROTTLE_RATES[scope]
    THROTTLE_RATES: dict[str, Any] = api_settings.DEFAULT_THROTTLE_RATES

    def __init__(self) -> None:
        self.num_requests, self.duration = parse_rate(self.rate or self.THROTTLE_RATES[self.scope])
        self.wait_seconds = 0.0

    def ident_for(self, request: Request) -> str:
        caller = request.user
        return caller.caller_id if isinstance(caller, Caller) else self.get_ident(request)

    def allow_request(self, request: Request, view: APIView) -> bool:
        now = time.time()
        window = int(now // self.duration)
        key = f"throttle:{self.scope}:{self.ident_for(request)}:{window}"
        try:
            count = window_count(key, self.duration + 1)
        except Exception:
            # The shared cache is down: keep accepting (intake availability comes first);
            # /health reports the cache.
            log.warning(
                "throttle: shared cache unavailable, request not counted",
                extra={"cause": "cache_unavailable"},
            )
            return True
        self.wait_seconds = (window + 1) * self.duration - now
        return count <= self.num_requests

    def wait(self) -> float:
        return self.wait_seconds


class IntakeThrottle(FixedWindowThrottle):
    """Per caller (service account, identity-provider subject or webhook source)."""

    scope = "intake"


class SuppressionThrottle(IntakeThrottle):
    """Per caller, like the intake, with a budget of its own so that lookups do not use up
    the caller's event quota."""

    scope = "suppressions"


class TokenThrottle(FixedWindowThrottle):
    """Per client address, against credential guessing."""

    scope = "token"

    def ident_for(self, request: Request) -> str:
        return self.get_ident(request)


class WebhookThrottle(IntakeThrottle):
    """Per webhook source (the caller `webhook:<source>`), counted after the signature
    check so that unsigned requests cannot use up a partner's quota."""

    scope = "webhook"


class FeedbackThrottle(FixedWindowThrottle):
    """Per provider (the view's `feedback_source`), counted after the signature check like
    the webhook intake's, so unsigned floods cannot use up the provider's quota."""

    scope = "feedback"

    def ident_for(self, request: Request) -> str:
        return f"provider:{getattr(request, 'feedback_source', 'unknown')}"
