"""Shared measurements: what every web and worker node counts for the guard and the SLO report.

Each process adds counts to buckets of GUARD_BUCKET_SECONDS (for the guard's windows) and of
an hour (for the SLO report) in one store every node shares:

- **Redis** when `REDIS_URL` is set: one hash per bucket, `HINCRBY` per field, with an expiry;
- **the database** on the embedded default: `guard_measurement` rows, added to with an upsert.

Counting is cheap on purpose (SPEC §8: the 202 path stays one short transaction plus a
hand-off). A request only adds to this process's buffer under a lock; the buffer is written
in one round trip (a pipeline, or one upsert statement) at most every GUARD_FLUSH_SECONDS, by
the request that finds the interval over, and at exit, as comcenter/lib/latency.py does for
the canary's samples. A reader (the guard) flushes its own process first. A quiet process
holds at most one interval of counts until its next request.

Recording never raises: a lost count must never fail or slow an answer. A flush that fails
keeps nothing (a store outage must not grow the buffer without bound); the warning says so.

Fields (all counters, summed over processes and nodes):
`answers` (every answer but the operations endpoints), `errors` (5xx that are faults),
`refused` (deliberate 503 with Retry-After: intake paused, receive-and-queue full),
`auth_ok` / `auth_fail` (bearer attempts on the intake: anything but a 401 / a 401),
`ack_n` and `ack_le_<ms>` (ack latencies of 202/200 intake answers, one bucket per bound),
`queue_sum` / `queue_n` (queue depth samples), `probe_n` / `probe_ok` (the guard's
readiness probes, for uptime).
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Mapping

from django.conf import settings
from django.db import connection

from comcenter.lib.redis import redis_for_url

log = logging.getLogger(__name__)

HOUR = 3600
_REDIS_PREFIX = "comcenter:guard:m"
_WARN_EVERY_SECONDS = 60.0

# Upper bounds (ms) of the ack-latency buckets; the SLO and the guard's thresholds are added
# so a percentile compared with them is exact at the threshold.
_ACK_BOUNDS_MS = (5, 10, 15, 25, 50, 75, 100, 150, 200, 250, 400, 500, 750, 1000, 2500, 5000)


def ack_bounds() -> tuple[float, ...]:
    extra = (settings.ACK_P95_SLO_MS, settings.GUARD_ACK_P95_MS)
    return tuple(sorted({float(bound) for bound in (*_ACK_BOUNDS_MS, *extra)}))


def ack_field(ms: float, bounds: tuple[float, ...]) -> str:
    for bound in bounds:
        if ms <= bound:
            return f"ack_le_{bound:g}"
    return "ack_le_inf"


def ack_percentile(counts: Mapping[str, int], fraction: float) -> float | None:
    """The smallest bucket bound below which `fraction` of the acks fall (math.inf when
    they lie beyond the last bound), or None without acks."""
    total = counts.get("ack_n", 0)
    if not total:
        return None
    needed = math.ceil(fraction * total)
    seen = 0
    for bound in ack_bounds():
        seen += counts.get(f"ack_le_{bound:g}", 0)
        if seen >= needed:
            return bound
    return math.inf


def resolutions() -> tuple[int, int]:
    return int(settings.GUARD_BUCKET_SECONDS), HOUR


def _retention(resolution: int) -> int:
    if resolution == HOUR:
        return int(settings.SLO_RETENTION_DAYS) * 86400
    return int(settings.GUARD_FINE_RETENTION_SECONDS)


class _Warn:
    def __init__(self) -> None:
        self._next = 0.0

    def __call__(self, what: str, exc: BaseException) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + _WARN_EVERY_SECONDS
            log.warning(
                "measurements: %s failed; counts dropped",
                what,
                extra={"error": type(exc).__name__},
            )


_warn = _Warn()

Counts = dict[tuple[int, int, str], int]


def _bucket_counts(at: float, fields: Mapping[str, int]) -> Counts:
    counts: Counts = {}
    for resolution in resolutions():
        bucket = int(at // resolution) * resolution
        for name, amount in fields.items():
            counts[(resolution, bucket, name)] = amount
    return counts


# --- the stores ----------------------------------------------------------------------------


def backend() -> str:
    return "redis" if settings.REDIS_URL else "database"


def _redis_key(resolution: int, bucket: int) -> str:
    return f"{_REDIS_PREFIX}:{resolution}:{bucket}"


def _redis_write(counts: Counts) -> None:
    pipe = redis_for_url(settings.REDIS_URL).pipeline(transaction=False)
    keys: set[tuple[int, int]] = set()
    for (resolution, bucket, name), amount in counts.items():
        pipe.hincrby(_redis_key(resolution, bucket), name, amount)
        keys.add((resolution, bucket))
    for resolution, bucket in keys:
        pipe.expire(_redis_key(resolution, bucket), _retention(resolution) + resolution)
    pipe.execute()


def _redis_read(resolution: int, buckets: list[int]) -> dict[int, dict[str, int]]:
    pipe = redis_for_url(settings.REDIS_URL).pipeline(transaction=False)
    for bucket in buckets:
        pipe.hgetall(_redis_key(resolution, bucket))
    found: dict[int, dict[str, int]] = {}
    for bucket, raw in zip(buckets, pipe.execute(), strict=True):
        if raw:
            found[bucket] = {key.decode(): int(value) for key, value in raw.items()}
    return found


_UPSERT = (
    "INSERT INTO guard_measurement (resolution, bucket, field, value) VALUES {rows} "
    "ON CONFLICT (resolution, bucket, field) "
    "DO UPDATE SET value = guard_measurement.value + excluded.value"
)


def _database_write(counts: Counts) -> None:
    # One statement for the whole buffer; ON CONFLICT … DO UPDATE is the same SQL on
    # PostgreSQL and SQLite (>= 3.24), and adds atomically however many processes write.
    rows = ", ".join(["(%s, %s, %s, %s)"] * len(counts))
    params: list[int | str] = []
    for (resolution, bucket, name), amount in sorted(counts.items()):
        params.extend((resolution, bucket, name, amount))
    with connection.cursor() as cursor:
        cursor.execute(_UPSERT.format(rows=rows), params)


def _database_read(resolution: int, buckets: list[int]) -> dict[int, dict[str, int]]:
    from guard.models import Measurement

    found: dict[int, dict[str, int]] = {}
    rows = Measurement.objects.filter(
        resolution=resolution, bucket__gte=buckets[0], bucket__lte=buckets[-1]
    ).values_list("bucket", "field", "value")
    for bucket, name, value in rows:
        found.setdefault(bucket, {})[name] = value
    return found


def _write(counts: Counts) -> None:
    if counts:
        (_redis_write if backend() == "redis" else _database_write)(counts)


# --- the per-process buffer ----------------------------------------------------------------


class _Buffer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._counts: Counts = {}
        self._next_flush = 0.0

    def add(self, fields: Mapping[str, int], at: float) -> None:
        with self._lock:
            if os.getpid() != self._pid:  # forked: the parent's counts are the parent's
                self._pid, self._counts, self._next_flush = os.getpid(), {}, 0.0
            for key, amount in _bucket_counts(at, fields).items():
                self._counts[key] = self._counts.get(key, 0) + amount
            now = time.monotonic()
            if now < self._next_flush:
                return
            self._next_flush = now + settings.GUARD_FLUSH_SECONDS
            batch, self._counts = self._counts, {}
        try:
            _write(batch)
        except Exception as exc:
            _warn("flush", exc)

    def flush(self) -> None:
        with self._lock:
            if os.getpid() != self._pid:
                return
            batch, self._counts = self._counts, {}
        try:
            _write(batch)
        except Exception as exc:
            _warn("flush", exc)

    def forget(self) -> None:
        with self._lock:
            self._counts, self._next_flush = {}, 0.0


_buffer = _Buffer()
atexit.register(_buffer.flush)


# --- the interface -------------------------------------------------------------------------


def measurement_add(fields: Mapping[str, int], *, at: float | None = None) -> None:
    """Add counts to the buckets of `at` (now by default). Cheap; never raises."""
    try:
        _buffer.add(fields, time.time() if at is None else at)
    except Exception as exc:
        _warn("record", exc)


def measurements_flush() -> None:
    """Write this process's buffered counts now (readers, tests, process exit)."""
    _buffer.flush()


def measurements_read(*, resolution: int, since: float, until: float) -> dict[int, dict[str, int]]:
    """The counts of every bucket of `resolution` that starts in [since, until], by bucket
    start; buckets with nothing counted are absent. Flushes this process first."""
    _buffer.flush()
    first = int(since // resolution) * resolution
    if since > first:
        first += resolution
    buckets = list(range(first, int(until) + 1, resolution))
    if not buckets:
        return {}
    if backend() == "redis":
        return _redis_read(resolution, buckets)
    return _database_read(resolution, buckets)


def measurements_sum(buckets: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in buckets:
        for name, value in counts.items():
            total[name] = total.get(name, 0) + value
    return total


def measurements_purge(*, now: float | None = None) -> int:
    """Delete database buckets past their retention (Redis expires its own); the count."""
    if backend() == "redis":
        return 0
    from guard.models import Measurement

    now = time.time() if now is None else now
    deleted = 0
    for resolution in resolutions():
        cutoff = now - _retention(resolution) - resolution
        deleted += Measurement.objects.filter(resolution=resolution, bucket__lt=cutoff).delete()[0]
    return deleted


def measurements_discard() -> None:
    """Drop this process's buffered counts without writing them (tests only)."""
    _buffer.forget()


def measurements_forget() -> None:
    """Drop every count of the configured store and of this process (tests only)."""
    _buffer.forget()
    if backend() == "redis":
        client = redis_for_url(settings.REDIS_URL)
        keys = list(client.scan_iter(match=f"{_REDIS_PREFIX}:*", count=1000))
        if keys:
            client.delete(*keys)
    else:
        from guard.models import Measurement

        Measurement.objects.all().delete()
