"""Intake throttles: a fixed-window counter per caller in Redis, so the limit holds across
every web process and node, with `Retry-After` on each 429.

DRF's SimpleRateThrottle keeps a list of every request's timestamp in the window and rewrites
it on each request (a read and a write of a growing value), a large share of the ack path
at intake rates (bench/NOTES.md). A fixed window keeps one counter per caller and window. Its
known trade-off: a burst straddling a window boundary may reach twice the rate for that moment.

Quota reservation: a round trip to Redis per request was itself ~10 % of the ack path's CPU
(bench/NOTES.md), so a process does not count each request there. It reserves a chunk of the
caller's window quota at once (one INCRBY) and answers the following requests of that caller
and window from its local remainder, with no I/O (`LocalQuota`). When the counter passes the
limit, the process keeps only what was left under it (possibly nothing): all processes together
never admit more than the limit. The price: quota a process reserved and did not use by the
window's end is lost, so the counter over-counts by at most chunk - 1 per process and window,
and a caller close to its limit may get its 429s up to P x (chunk - 1) requests early with P
web processes. `chunk_for` keeps that small: a chunk is 1/64 of the limit, between 1 and 16, so
limits under 128 (the token throttle's 60/min, the tests' 2/min) are counted exactly, request
by request, and no process strands more than 1/64 of a limit (15 requests, 0.25 %, of the
default 6000/min). Without Redis (the embedded default) the counter is in the local cache."""

from __future__ import annotations

import functools
import logging
import os
import threading
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

# A chunk is limit // CHUNK_DIVISOR, at least 1 and at most CHUNK_MAX (bench/NOTES.md).
CHUNK_DIVISOR = 64
CHUNK_MAX = 16


@functools.lru_cache(maxsize=64)
def parse_rate(rate: str) -> tuple[int, int]:
    """'6000/min' -> (6000, 60). Parsed once per rate: DRF builds the throttles anew for
    every request."""
    count, _, period = rate.partition("/")
    return int(count), _PERIODS[period.strip()[:1]]


def chunk_for(limit: int) -> int:
    """How many requests of a `limit`-per-window quota a process reserves at once."""
    return max(1, min(CHUNK_MAX, limit // CHUNK_DIVISOR))


def window_count(key: str, ttl: int, *, amount: int) -> int:
    """Add `amount` to the counter `key` (created with `ttl`) and return its new value."""
    client = shared_redis()
    if client is not None:
        pipe = client.pipeline(transaction=False)
        pipe.incrby(key, amount)
        pipe.expire(key, ttl, nx=True)
        return int(pipe.execute()[0])
    cache.add(key, 0, timeout=ttl)
    try:
        return cache.incr(key, amount)
    except ValueError:  # expired between add and incr
        cache.add(key, amount, timeout=ttl)
        return amount


class LocalQuota:
    """The quota this process has reserved in the shared counters and not used yet.

    Entries are keyed by counter key (scope, caller and window) and hold the requests left,
    the limit they were reserved under (a quota reserved under another rate is not reused) and
    the window's end; an entry goes when its last request is used, and entries of past windows
    are dropped at most once a second on the reservation path, so memory follows the callers
    active in the current windows. The lock makes take-one-from-the-remainder atomic under a
    threaded server; it is not held during the round trip to Redis (two threads may then both
    reserve a chunk, and both chunks are kept)."""

    def __init__(self) -> None:
        self.forget()

    def forget(self) -> None:
        """Drop every remainder. Run in a forked child (gunicorn and granian fork their workers
        after import), which must not spend quota its parent reserved: a fresh lock too, as
        the parent's may have been held by another thread at the fork."""
        self._lock = threading.Lock()
        self._left: dict[str, list[Any]] = {}  # key -> [requests left, limit, window end]
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._left)

    def take(self, counter: str, *, limit: int, duration: int, now: float) -> bool:
        """Admit one request of `counter` for the window of `now` (`duration` seconds long),
        from the local remainder, else from a new chunk reserved in the shared counter. Raises
        the counter's error when it cannot be reached."""
        window = int(now // duration)
        key = f"{counter}:{window}"
        with self._lock:
            entry = self._left.get(key)
            if entry is not None and entry[1] == limit:
                entry[0] -= 1
                if not entry[0]:
                    del self._left[key]
                return True
        chunk = chunk_for(limit)
        count = window_count(key, duration + 1, amount=chunk)
        granted = min(chunk, limit - (count - chunk))  # what was left under the limit
        if granted <= 0:
            return False
        if granted > 1:
            with self._lock:
                self._sweep(now)
                entry = self._left.get(key)
                held = entry[0] if entry is not None and entry[1] == limit else 0
                self._left[key] = [held + granted - 1, limit, (window + 1) * duration]
        return True

    def _sweep(self, now: float) -> None:
        if now >= self._next_sweep:
            self._left = {key: entry for key, entry in self._left.items() if entry[2] > now}
            self._next_sweep = now + 1.0


# This process's reservations, shared by every throttle class (their keys name the scope).
local_quota = LocalQuota()
os.register_at_fork(after_in_child=local_quota.forget)


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
        counter = f"throttle:{self.scope}:{self.ident_for(request)}"
        try:
            allowed = local_quota.take(
                counter, limit=self.num_requests, duration=self.duration, now=now
            )
        except Exception:
            # The shared cache is down: keep accepting (intake availability comes first);
            # /health reports the cache.
            log.warning(
                "throttle: shared cache unavailable, request not counted",
                extra={"cause": "cache_unavailable"},
            )
            return True
        self.wait_seconds = (now // self.duration + 1) * self.duration - now
        return allowed

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
