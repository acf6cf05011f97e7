"""The four pause criteria of SPEC §8, read from the shared measurements.

- `errors_5xx`: errors / answers over GUARD_WINDOW_SECONDS (at least GUARD_MIN_REQUESTS
  answers) >= GUARD_5XX_RATIO turns DISABLE_SEND on;
- `jwt_failures`: auth_fail / (auth_ok + auth_fail), same window and minimum,
  >= GUARD_JWT_FAILURE_RATIO turns INTAKE_PAUSED on;
- `queue_depth`: the mean depth of every bucket of GUARD_QUEUE_WINDOW_SECONDS above twice
  the baseline, with samples covering the window, turns DISPATCH_PAUSED on;
- `ack_p95`: the P95 of the 202/200 acks over GUARD_WINDOW_SECONDS (at least
  GUARD_MIN_REQUESTS acks) above GUARD_ACK_P95_MS turns DISABLE_SEND on.

The queue baseline is the median of the bucket means of the GUARD_QUEUE_BASELINE_SECONDS
before the queue window, never below GUARD_QUEUE_FLOOR. "For 10 minutes" is read as: the
oldest sample in the window is at most one bucket plus one guard interval younger than the
window's start, and no sample in the window is at or below the threshold.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings

from guard.measurements import ack_percentile, measurements_read, measurements_sum
from guard.models import Trigger

ACTIONS: dict[str, str] = {
    Trigger.ERRORS_5XX: "DISABLE_SEND",
    Trigger.JWT_FAILURES: "INTAKE_PAUSED",
    Trigger.QUEUE_DEPTH: "DISPATCH_PAUSED",
    Trigger.ACK_P95: "DISABLE_SEND",
}


@dataclass(frozen=True)
class Reading:
    """A trigger's current value against its threshold. `value` is None when there is too
    little data to judge (below the minimum, or no queue samples covering the window)."""

    trigger: str
    value: float | None
    threshold: float
    window_seconds: int
    samples: int
    tripped: bool
    flag: str
    detail: str

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.value is not None and math.isinf(self.value):
            data["value"] = "inf"
        return data


def _ratio_reading(trigger: str, *, bad: int, total: int, threshold: float, what: str) -> Reading:
    minimum = int(settings.GUARD_MIN_REQUESTS)
    window = int(settings.GUARD_WINDOW_SECONDS)
    if total < minimum:
        return Reading(
            trigger,
            None,
            threshold,
            window,
            total,
            False,
            ACTIONS[trigger],
            f"{total} {what} in the window, fewer than GUARD_MIN_REQUESTS={minimum}",
        )
    value = bad / total
    return Reading(
        trigger,
        round(value, 6),
        threshold,
        window,
        total,
        value >= threshold,
        ACTIONS[trigger],
        f"{bad} of {total} {what}",
    )


def _requests(now: float) -> dict[str, int]:
    resolution = int(settings.GUARD_BUCKET_SECONDS)
    since = now - settings.GUARD_WINDOW_SECONDS
    return measurements_sum(
        measurements_read(resolution=resolution, since=since, until=now).values()
    )


def errors_reading(counts: dict[str, int]) -> Reading:
    return _ratio_reading(
        Trigger.ERRORS_5XX,
        bad=counts.get("errors", 0),
        total=counts.get("answers", 0),
        threshold=float(settings.GUARD_5XX_RATIO),
        what="answers were 5xx",
    )


def jwt_reading(counts: dict[str, int]) -> Reading:
    failed = counts.get("auth_fail", 0)
    return _ratio_reading(
        Trigger.JWT_FAILURES,
        bad=failed,
        total=failed + counts.get("auth_ok", 0),
        threshold=float(settings.GUARD_JWT_FAILURE_RATIO),
        what="bearer attempts on the intake failed",
    )


def ack_reading(counts: dict[str, int]) -> Reading:
    minimum = int(settings.GUARD_MIN_REQUESTS)
    window = int(settings.GUARD_WINDOW_SECONDS)
    threshold = float(settings.GUARD_ACK_P95_MS)
    total = counts.get("ack_n", 0)
    if total < minimum:
        return Reading(
            Trigger.ACK_P95,
            None,
            threshold,
            window,
            total,
            False,
            ACTIONS[Trigger.ACK_P95],
            f"{total} acks in the window, fewer than GUARD_MIN_REQUESTS={minimum}",
        )
    p95 = ack_percentile(counts, 0.95)
    assert p95 is not None  # total > 0
    shown = "beyond the last bucket" if math.isinf(p95) else f"<= {p95:g} ms"
    return Reading(
        Trigger.ACK_P95,
        p95,
        threshold,
        window,
        total,
        p95 > threshold,
        ACTIONS[Trigger.ACK_P95],
        f"P95 of {total} acks {shown}",
    )


def queue_reading(now: float) -> Reading:
    resolution = int(settings.GUARD_BUCKET_SECONDS)
    window = int(settings.GUARD_QUEUE_WINDOW_SECONDS)
    start = now - window
    history = measurements_read(
        resolution=resolution, since=start - settings.GUARD_QUEUE_BASELINE_SECONDS, until=now
    )
    means = {
        bucket: counts["queue_sum"] / counts["queue_n"]
        for bucket, counts in history.items()
        if counts.get("queue_n")
    }
    before = [mean for bucket, mean in means.items() if bucket < start]
    floor = float(settings.GUARD_QUEUE_FLOOR)
    baseline = max(statistics.median(before), floor) if before else floor
    threshold = 2 * baseline
    recent = sorted((bucket, mean) for bucket, mean in means.items() if bucket >= start)
    flag = ACTIONS[Trigger.QUEUE_DEPTH]
    if not recent:
        return Reading(
            Trigger.QUEUE_DEPTH,
            None,
            threshold,
            window,
            0,
            False,
            flag,
            "no queue depth samples in the window",
        )
    lowest = min(mean for _, mean in recent)
    slack = resolution + settings.GUARD_INTERVAL_SECONDS
    covered = recent[0][0] <= start + slack
    detail = f"lowest depth {lowest:g} over {len(recent)} buckets; baseline {baseline:g}"
    if not covered:
        detail += "; samples do not cover the window yet"
    return Reading(
        Trigger.QUEUE_DEPTH,
        lowest,
        threshold,
        window,
        len(recent),
        covered and lowest > threshold,
        flag,
        detail,
    )


def readings(*, now: float | None = None) -> list[Reading]:
    """Every trigger's reading now, from the shared store."""
    now = time.time() if now is None else now
    counts = _requests(now)
    return [errors_reading(counts), jwt_reading(counts), queue_reading(now), ack_reading(counts)]
