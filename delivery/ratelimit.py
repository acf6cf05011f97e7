"""The send rate limit, shared by every worker process and node through database rows.

Each limit is a GCRA bucket (the "theoretical arrival time" form of a token bucket): one
timestamp per row, advanced by 60/rate seconds per send, with a burst of one second's worth of
sends. Over any 60 s window a bucket therefore lets through at most rate + burst sends. A
worker reserves tokens for a whole batch in one short transaction that locks the global row
and its provider's row (always in name order, so two workers cannot deadlock), and gives back
what it did not use. A message that finds no token stays where it is and waits: the limit
delays, it never drops."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from comcenter.lib.db import db_now
from delivery.models import RateBucket

GLOBAL_BUCKET = "global"
_EPSILON = 1e-6


@dataclass(frozen=True)
class Grant:
    granted: int
    # When nothing was granted: seconds until the next token.
    wait_seconds: float = 0.0


def bucket_limits(provider: str) -> dict[str, int]:
    """{bucket name: sends per minute} of the limits a send through `provider` counts against."""
    default = settings.SEND_RATE_PER_MINUTE
    per_provider = settings.SEND_RATE_PER_MINUTE_BY_PROVIDER.get(provider, default)
    return {GLOBAL_BUCKET: default, f"provider:{provider}": per_provider}


def _interval(rate: int) -> float:
    return 60.0 / rate


def _burst(rate: int) -> int:
    return max(1, math.ceil(rate / 60))


def _locked_buckets(names: list[str]) -> dict[str, RateBucket]:
    rows = {
        b.name: b
        for b in RateBucket.objects.select_for_update().filter(name__in=names).order_by("name")
    }
    if len(rows) < len(names):
        RateBucket.objects.bulk_create(
            [RateBucket(name=name) for name in names if name not in rows], ignore_conflicts=True
        )
        rows = {
            b.name: b
            for b in RateBucket.objects.select_for_update().filter(name__in=names).order_by("name")
        }
    return rows


def _available(row: RateBucket, rate: int, now: datetime) -> tuple[int, float]:
    """(tokens available now, seconds until the next one when none is)."""
    interval = _interval(rate)
    burst = _burst(rate)
    tat = max(row.tat or now, now)
    headroom = (now - tat).total_seconds() + burst * interval
    tokens = max(0, math.floor(headroom / interval + _EPSILON))
    wait = 0.0 if tokens else max(0.0, interval - headroom)
    return tokens, wait


def ratelimit_acquire(*, provider: str, want: int) -> Grant:
    """Reserve up to `want` sends through `provider` against the global and provider limits."""
    limits = bucket_limits(provider)
    names = sorted(limits)
    with transaction.atomic():
        rows = _locked_buckets(names)
        now = db_now()
        granted = want
        wait = 0.0
        for name in names:
            tokens, seconds = _available(rows[name], limits[name], now)
            granted = min(granted, tokens)
            wait = max(wait, seconds)
        if granted <= 0:
            return Grant(granted=0, wait_seconds=wait)
        for name in names:
            row = rows[name]
            row.tat = max(row.tat or now, now) + timedelta(
                seconds=granted * _interval(limits[name])
            )
            row.save(update_fields=["tat"])
    return Grant(granted=granted)


def ratelimit_refund(*, provider: str, count: int) -> None:
    """Give back reserved sends that did not happen (gated, released, claimed fewer)."""
    if count <= 0:
        return
    limits = bucket_limits(provider)
    names = sorted(limits)
    with transaction.atomic():
        rows = _locked_buckets(names)
        now = db_now()
        for name in names:
            row = rows[name]
            if row.tat is None:
                continue
            row.tat = max(now, row.tat - timedelta(seconds=count * _interval(limits[name])))
            row.save(update_fields=["tat"])
