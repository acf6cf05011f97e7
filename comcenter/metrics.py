"""Our own Prometheus metrics (django-prometheus adds request metrics by view).

Two kinds, and the split is what keeps several gunicorn workers correct:

- **Events that happen in a process** (counters, histograms below): under gunicorn and the
  django-q2 cluster, `PROMETHEUS_MULTIPROC_DIR` is set before anything imports
  prometheus_client, so every process writes its values to files there and a scrape sums
  them (`MultiProcessCollector`). The launcher (`comcenter/run.py`) and the gunicorn config
  (`deploy/gunicorn.conf.py`) set it up and clear it at start.
- **State** (queue depth, oldest pending age, messages by state, DLQ ratio, flags): never a
  per-process Gauge, which would differ per worker, but read from the database at scrape time
  by `StateCollector`, so every worker and every node reports the same numbers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.utils import timezone
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from delivery.selectors import queue_stats
from events.models import Event, OutboxState
from flags.services import flag_states

log = logging.getLogger(__name__)

# --- scrape-time state ------------------------------------------------------------------


def _queue_families() -> Iterator[Metric]:
    stats = queue_stats()
    yield GaugeMetricFamily(
        "comcenter_queue_depth",
        "Messages waiting to be dispatched (pending, held, retrying, dispatching).",
        value=stats["depth"],
    )
    oldest = stats.get("oldest_pending_age_seconds")
    yield GaugeMetricFamily(
        "comcenter_queue_oldest_pending_age_seconds",
        "How long the most overdue waiting message has been due (0 when none).",
        value=float(oldest or 0.0),
    )
    by_state = GaugeMetricFamily(
        "comcenter_messages", "Messages currently in each state.", labels=["state"]
    )
    for state, count in sorted(stats.get("by_state", {}).items()):
        by_state.add_metric([str(state)], count)
    yield by_state
    yield GaugeMetricFamily(
        "comcenter_dead_messages", "Messages in the dead-letter queue.", value=stats["dead"]
    )
    yield GaugeMetricFamily(
        "comcenter_dlq_ratio",
        "Dead-lettered messages over all finished messages in the DLQ retention window.",
        value=float(stats["dlq_ratio"]),
    )
    if stats.get("delivery_rate") is not None:
        yield GaugeMetricFamily(
            "comcenter_delivery_rate",
            "Delivered over delivered + undelivered provider receipts in the DLQ retention "
            "window (absent before the first receipt).",
            value=float(stats["delivery_rate"]),
        )


def _outbox_families() -> Iterator[Metric]:
    # Both read the outbox's partial index: the first row for the age, and the pending rows
    # (the backlog, not the event table) for the count.
    pending = Event.objects.filter(outbox_state=OutboxState.PENDING)
    oldest = pending.order_by("id").values_list("received_at", flat=True).first()
    count = pending.count()
    yield GaugeMetricFamily(
        "comcenter_outbox_pending",
        "Accepted events not yet turned into messages (the transactional outbox).",
        value=count,
    )
    yield GaugeMetricFamily(
        "comcenter_outbox_oldest_age_seconds",
        "Age of the oldest event still in the outbox (0 when none).",
        value=(timezone.now() - oldest).total_seconds() if oldest else 0.0,
    )


def _flag_families() -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "comcenter_flag_enabled", "Effective value of each feature flag (1 on).", labels=["flag"]
    )
    for state in flag_states():
        family.add_metric([state.name], 1.0 if state.effective else 0.0)
    yield family


def _guard_families() -> Iterator[Metric]:
    from guard.models import Trigger
    from guard.selectors import incidents_open

    open_by_trigger = dict.fromkeys(Trigger.values, 0)
    for trigger in incidents_open().values_list("trigger", flat=True):
        open_by_trigger[trigger] += 1
    family = GaugeMetricFamily(
        "comcenter_guard_open_incidents",
        "Incidents the guard opened and no operator has resolved yet, by trigger.",
        labels=["trigger"],
    )
    for trigger, count in open_by_trigger.items():
        family.add_metric([trigger], count)
    yield family


_STATE_SOURCES = {
    "queue": _queue_families,
    "outbox": _outbox_families,
    "flags": _flag_families,
    "guard": _guard_families,
}


class StateCollector(Collector):
    """Gauges computed from the database on every scrape (see the module docstring).

    A source that fails (database down, a table not migrated yet) is reported through
    `comcenter_scrape_source_ok` instead of failing the whole scrape, so the request and
    intake metrics stay visible during the very outage they help diagnose."""

    def collect(self) -> Iterable[Metric]:
        info = GaugeMetricFamily(
            "comcenter_build_info",
            "Version and build of this process.",
            labels=["version", "build"],
        )
        info.add_metric([settings.APP_VERSION, settings.BUILD], 1.0)
        yield info
        source_ok = GaugeMetricFamily(
            "comcenter_scrape_source_ok",
            "Whether each scrape-time source could be read (1) or failed (0).",
            labels=["source"],
        )
        duration = GaugeMetricFamily(
            "comcenter_scrape_source_seconds",
            "Time spent reading each scrape-time source.",
            labels=["source"],
        )
        for name, source in _STATE_SOURCES.items():
            started = time.perf_counter()
            try:
                families = list(source())
            except Exception as exc:
                log.warning(
                    "metrics: scrape source failed",
                    extra={"source": name, "error": type(exc).__name__},
                )
                families = []
                source_ok.add_metric([name], 0.0)
            else:
                source_ok.add_metric([name], 1.0)
            duration.add_metric([name], time.perf_counter() - started)
            yield from families
        yield source_ok
        yield duration


class _ThisProcess(Collector):
    """The process-local default registry, when not in multiprocess mode (dev server)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def metrics_registry() -> CollectorRegistry:
    """A registry for one scrape: every process's values plus the database state."""
    registry = CollectorRegistry(auto_describe=False)
    directory = settings.PROMETHEUS_MULTIPROC_DIR
    if directory:
        multiprocess.MultiProcessCollector(registry, path=directory)
    else:
        registry.register(_ThisProcess())
    registry.register(StateCollector())
    return registry


def metrics_exposition() -> tuple[bytes, str]:
    """The Prometheus text of one scrape and its content type."""
    return generate_latest(metrics_registry()), CONTENT_TYPE_LATEST
