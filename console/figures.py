"""The dashboard's figures: what is true now, and a minute-by-minute history.

Reads are bounded on purpose: the dashboard refreshes every few seconds for every operator
who has it open, so it never recounts a table. Current values come from the same sources as
`/metrics` (the queue selector, the flags, the shared ack-latency store) and the process
counters; the history comes from `Sample` rows, one a minute written by the periodic task
`console-sample`, so a day is at most 1,440 small rows. Counts that only the process
counters know (answers by outcome, auth failures) are the totals of this node's processes
(every process under `make run` and gunicorn writes them to PROMETHEUS_MULTIPROC_DIR)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db.models.functions import Now
from django.utils import timezone
from prometheus_client import REGISTRY as PROCESS_REGISTRY
from prometheus_client import CollectorRegistry, multiprocess

from comcenter.lib.latency import ack_latency_p95_ms
from console.models import Sample
from delivery.selectors import queue_stats
from flags.services import FlagState, flag_states

SAMPLE_KEEP = timedelta(days=2)
# The counters of comcenter/lib/metrics.py the dashboard shows, and the label they group by.
COUNTERS = {
    "comcenter_events": ("outcome",),
    "comcenter_auth_failures": ("reason",),
    "comcenter_deliveries": ("channel", "state"),
}


def counter_totals() -> dict[str, dict[str, float]]:
    """This node's counter totals: {"comcenter_events": {"accepted": 12.0, ...}, ...}."""
    if settings.PROMETHEUS_MULTIPROC_DIR:
        registry = CollectorRegistry(auto_describe=False)
        multiprocess.MultiProcessCollector(registry, path=settings.PROMETHEUS_MULTIPROC_DIR)
        families = registry.collect()
    else:
        families = PROCESS_REGISTRY.collect()
    totals: dict[str, dict[str, float]] = {name: defaultdict(float) for name in COUNTERS}
    for family in families:
        labels = COUNTERS.get(family.name)
        if labels is None:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                key = "/".join(str(sample.labels.get(label, "")) for label in labels)
                totals[family.name][key] += sample.value
    return {name: dict(values) for name, values in totals.items()}


@dataclass(frozen=True)
class Figures:
    at: datetime
    queue: dict[str, Any]
    ack_p95_ms: float | None
    counters: dict[str, dict[str, float]]
    flags: list[FlagState]
    incidents: list[Any] | None  # None: no incident model is installed


def open_incidents(limit: int = 10) -> list[Any] | None:
    """The open incidents of the automatic guard, newest first, when its app is installed."""
    try:
        incident = apps.get_model("guard", "Incident")
    except LookupError:
        return None
    rows = incident._default_manager.all()
    if hasattr(incident, "resolved_at"):
        rows = rows.filter(resolved_at=None)
    return list(rows.order_by("-pk")[:limit])


def figures_now() -> Figures:
    return Figures(
        at=timezone.now(),
        queue=queue_stats(),
        ack_p95_ms=ack_latency_p95_ms(),
        counters=counter_totals(),
        flags=flag_states(),
        incidents=open_incidents(),
    )


def sample_take() -> int:
    """Periodic task: record one sample of the figures; drop samples older than two days.
    Returns the new sample's id."""
    figures = figures_now()
    sample = Sample.objects.create(
        data={
            "depth": figures.queue["depth"],
            "oldest_s": figures.queue["oldest_pending_age_seconds"] or 0.0,
            "dead": figures.queue["dead"],
            "dlq_ratio": figures.queue["dlq_ratio"],
            "delivery_rate": figures.queue["delivery_rate"],
            "ack_p95_ms": figures.ack_p95_ms,
            "counters": figures.counters,
        }
    )
    Sample.objects.filter(at__lt=Now() - SAMPLE_KEEP).delete()
    return sample.pk


@dataclass(frozen=True)
class Series:
    """One line of a chart: (time, value) points, oldest first."""

    name: str
    points: list[tuple[datetime, float]]


def _per_minute(before: dict[str, Any], after: dict[str, Any], seconds: float) -> float:
    """The rate between two counter totals; a restarted node's counters start again at 0."""
    total_before, total_after = sum(before.values()), sum(after.values())
    delta = total_after - total_before if total_after >= total_before else total_after
    return delta * 60.0 / seconds if seconds > 0 else 0.0


def history(*, window: timedelta, buckets: int = 60) -> dict[str, list[Series]]:
    """The charts' series over `window` from the samples, at most `buckets` points each
    (a bucket keeps its last sample of gauges and the mean rate of counters)."""
    since = timezone.now() - window
    samples = list(Sample.objects.filter(at__gte=since).order_by("at").values("at", "data"))
    width = window / buckets
    points: dict[str, dict[int, list[tuple[datetime, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for previous, sample in pairwise(samples):
        bucket = int((sample["at"] - since) / width)
        seconds = (sample["at"] - previous["at"]).total_seconds()
        data, last = sample["data"], previous["data"]
        for name in ("depth", "oldest_s", "dlq_ratio", "ack_p95_ms"):
            points[name][bucket].append((sample["at"], float(data.get(name) or 0.0)))
        if data.get("delivery_rate") is not None:  # no point before the first receipt
            points["delivery_rate"][bucket].append((sample["at"], float(data["delivery_rate"])))
        for counter, groups in data.get("counters", {}).items():
            previous_groups = last.get("counters", {}).get(counter, {})
            if counter == "comcenter_events":
                for outcome in groups:
                    rate = _per_minute(
                        {outcome: previous_groups.get(outcome, 0.0)},
                        {outcome: groups[outcome]},
                        seconds,
                    )
                    points[f"events:{outcome}"][bucket].append((sample["at"], rate))
            else:
                points[counter][bucket].append(
                    (sample["at"], _per_minute(previous_groups, groups, seconds))
                )
    result: dict[str, list[Series]] = defaultdict(list)
    for name, by_bucket in sorted(points.items()):
        chart = name.split(":")[0]
        line = []
        for _bucket, values in sorted(by_bucket.items()):
            at = values[-1][0]
            value = (
                sum(v for _at, v in values) / len(values)
                if chart in ("events", *COUNTERS)
                else values[-1][1]
            )
            line.append((at, value))
        result[chart].append(Series(name=name.split(":")[-1], points=line))
    return dict(result)
