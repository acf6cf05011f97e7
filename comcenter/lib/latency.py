"""Recent ack latencies, shared by every process, for the canary's `p95_ms`.

The Prometheus histogram answers "how slow over the last minutes" in Grafana, but its buckets
cannot give an exact percentile of the last N requests, and under gunicorn each worker only
sees its own requests. So the intake also records each ack latency here, somewhere every
process can read it:

- **Redis** (`REDIS_URL`, production): one list. Each process buffers its samples and pushes
  them in one pipelined LPUSH + LTRIM round trip at most every FLUSH_SECONDS (and when it
  exits), not one round trip per acknowledgement: on a small machine every Redis call on the
  ack path costs measurable CPU. A process's samples therefore reach the shared list within
  FLUSH_SECONDS while it serves traffic; the few of its last request before a quiet spell wait
  for its next one (the canary's window is the last 200 samples, so this changes nothing
  that matters). Readers in the same process flush first, so a process always sees its own.
- **a directory** (`PROMETHEUS_MULTIPROC_DIR`, the embedded `make run` under gunicorn): each
  process writes a fixed-size ring of (time, latency) slots to its own file with `pwrite`;
  readers merge every file by time. Files of dead processes still hold valid recent history.
- **process memory**, only when neither exists (a single-process dev server, tests).

Recording never raises: losing a sample must never fail or slow an acknowledgement.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import struct
import threading
import time
from collections import deque
from pathlib import Path

from django.conf import settings

from comcenter.lib.redis import redis_for_url

log = logging.getLogger(__name__)

REDIS_KEY = "comcenter:ack_latency_ms"
# Redis calls on the ack path give up quickly: a sample is not worth waiting for.
_FILE_PREFIX = "ack_latency_"
_HEADER = struct.Struct("<Q")  # number of samples ever written by this process
_SLOT = struct.Struct("<dd")  # (unix time, latency ms)
# The longest a sample waits in its process before the shared list gets it.
FLUSH_SECONDS = 0.25


def window() -> int:
    """How many recent samples the percentile is computed over."""
    return int(settings.CANARY_P95_WINDOW)


def min_samples() -> int:
    """Below this many samples the canary reports null: a p95 of 3 requests means nothing."""
    return int(settings.CANARY_P95_MIN_SAMPLES)


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile (no interpolation): always a latency that was really seen."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _warn(what: str, exc: BaseException) -> None:
    # One cause, so a Redis outage is logged about once a minute, not per sample
    # (RepeatLimitFilter, comcenter/lib/logging.py).
    log.warning(
        "ack latency recorder: %s failed",
        what,
        extra={"error": type(exc).__name__, "cause": f"recorder_{what}"},
    )


# --- Redis ---------------------------------------------------------------------------------


class _RedisBuffer:
    """This process's samples not yet in Redis; see the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._samples: list[float] = []
        self._next_flush = 0.0
        self._url = ""

    def record(self, url: str, ms: float) -> None:
        with self._lock:
            if os.getpid() != self._pid:  # forked: the parent's samples are the parent's
                self._pid, self._samples, self._next_flush = os.getpid(), [], 0.0
            self._url = url
            self._samples.append(ms)
            now = time.monotonic()
            if now < self._next_flush and len(self._samples) < window():
                return
            self._next_flush = now + FLUSH_SECONDS
            batch, self._samples = self._samples, []
        self._push(url, batch)

    def flush(self) -> None:
        """Push whatever is buffered now (readers, process exit). Never raises."""
        with self._lock:
            if os.getpid() != self._pid or not self._samples:
                return
            batch, self._samples = self._samples, []
        try:
            self._push(self._url, batch)
        except Exception as exc:
            _warn("flush", exc)

    @staticmethod
    def _push(url: str, batch: list[float]) -> None:
        pipe = redis_for_url(url).pipeline(transaction=False)
        pipe.lpush(REDIS_KEY, *(f"{ms:.3f}" for ms in batch))
        pipe.ltrim(REDIS_KEY, 0, window() - 1)
        pipe.execute()


_buffer = _RedisBuffer()
atexit.register(_buffer.flush)


def _redis_recent(url: str) -> list[float]:
    _buffer.flush()
    raw = redis_for_url(url).lrange(REDIS_KEY, 0, window() - 1)
    return [float(item) for item in raw]


# --- per-process files ---------------------------------------------------------------------


class _RingFile:
    """This process's ring of samples in `directory`, reopened after a fork."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = -1
        self._fd = -1
        self._count = 0
        self._slots = 0

    def record(self, directory: str, ms: float) -> None:
        with self._lock:
            pid = os.getpid()
            if pid != self._pid:
                self._open(directory, pid)
            slot = self._count % self._slots
            os.pwrite(self._fd, _SLOT.pack(time.time(), ms), _HEADER.size + slot * _SLOT.size)
            # The count goes last: a reader never counts a slot that is not written yet.
            self._count += 1
            os.pwrite(self._fd, _HEADER.pack(self._count), 0)

    def reset(self) -> None:
        """Forget the open file; the next sample starts a new one."""
        with self._lock:
            self._pid = -1

    def _open(self, directory: str, pid: int) -> None:
        # A forked child inherits the parent's descriptor; it must not write into the
        # parent's file, so it closes its copy and opens (and truncates) its own.
        if self._fd >= 0:
            os.close(self._fd)
        path = Path(directory) / f"{_FILE_PREFIX}{pid}.bin"
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self._pid = pid
        self._count = 0
        self._slots = window()
        os.pwrite(self._fd, _HEADER.pack(0), 0)


_ring = _RingFile()


def _files_recent(directory: str) -> list[float]:
    samples: list[tuple[float, float]] = []
    for path in Path(directory).glob(f"{_FILE_PREFIX}*.bin"):
        try:
            data = path.read_bytes()
        except OSError:  # the process's file vanished between glob and read
            continue
        if len(data) < _HEADER.size:
            continue
        (count,) = _HEADER.unpack_from(data, 0)
        capacity = (len(data) - _HEADER.size) // _SLOT.size
        for index in range(min(count, capacity)):
            samples.append(_SLOT.unpack_from(data, _HEADER.size + index * _SLOT.size))
    samples.sort(reverse=True)
    return [ms for _, ms in samples[: window()]]


# --- process memory ------------------------------------------------------------------------

# Bounded by the largest window the settings allow.
_memory: deque[float] = deque(maxlen=10_000)


# --- the interface -------------------------------------------------------------------------


def backend() -> str:
    """Where samples go: "redis", "files" or "memory" (reported by tests and docs)."""
    if settings.REDIS_URL:
        return "redis"
    if settings.PROMETHEUS_MULTIPROC_DIR:
        return "files"
    return "memory"


def ack_latency_record(seconds: float) -> None:
    """Record one ack latency. Cheap, and never raises."""
    ms = seconds * 1000.0
    kind = backend()
    try:
        if kind == "redis":
            _buffer.record(settings.REDIS_URL, ms)
        elif kind == "files":
            _ring.record(settings.PROMETHEUS_MULTIPROC_DIR, ms)
        else:
            _memory.appendleft(ms)
    except Exception as exc:  # any failure of the store: drop the sample, keep the ack
        _warn("record", exc)


def ack_latency_recent() -> list[float] | None:
    """The newest samples (at most `window()`), in milliseconds; None if unreadable."""
    kind = backend()
    try:
        if kind == "redis":
            return _redis_recent(settings.REDIS_URL)
        if kind == "files":
            return _files_recent(settings.PROMETHEUS_MULTIPROC_DIR)
        return list(_memory)[: window()]
    except Exception as exc:
        _warn("read", exc)
        return None


def ack_latency_p95_ms() -> float | None:
    """P95 of the recent acks in ms (rounded to 0.1), or None below `min_samples()`."""
    recent = ack_latency_recent()
    if not recent or len(recent) < min_samples():
        return None
    value = percentile(recent, 0.95)
    return None if value is None else round(value, 1)


def ack_latency_forget() -> None:
    """Drop every sample of the configured store (tests, and after a benchmark warm-up)."""
    kind = backend()
    if kind == "redis":
        _buffer.flush()
        redis_for_url(settings.REDIS_URL).delete(REDIS_KEY)
    elif kind == "files":
        for path in Path(settings.PROMETHEUS_MULTIPROC_DIR).glob(f"{_FILE_PREFIX}*.bin"):
            path.unlink(missing_ok=True)
        _ring.reset()
    else:
        _memory.clear()
