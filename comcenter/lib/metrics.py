"""The metric objects that processes record into (counters and histograms).

They live in `comcenter/lib` so that every app can record without importing the project
package; the scrape-time collectors and the exposition stay in `comcenter/metrics.py`.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "comcenter_events_total",
    "Intake outcomes: accepted, duplicate, conflict, or rejected with a reason.",
    ["outcome", "reason"],
)
AUTH_FAILURES = Counter(
    "comcenter_auth_failures_total",
    "Authentication failures by reason (expired, invalid_token, bad_signature, ...).",
    ["reason"],
)
ACK_LATENCY = Histogram(
    "comcenter_ack_latency_seconds",
    "Time from request start to the intake's answer, for POST /api/v1/events.",
    buckets=(0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.075, 0.12, 0.25, 0.5, 1.0, 2.5),
)
DELIVERIES = Counter(
    "comcenter_deliveries_total",
    "Delivery outcomes (terminal or retrying) by channel, provider and resulting state.",
    ["channel", "provider", "state"],
)
FEEDBACK_RECEIPTS = Counter(
    "comcenter_feedback_receipts_total",
    "Provider delivery receipts by provider, kind (delivered, bounced_hard ...) and what "
    "became of them (applied, recorded, pending, duplicate).",
    ["provider", "kind", "outcome"],
)
E2E_LATENCY = Histogram(
    "comcenter_e2e_latency_seconds",
    "Time from the event's receipt to the provider accepting the message (or dry-run).",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
AUDIT_SEALED_ROWS = Counter(
    "comcenter_audit_sealed_rows_total", "Lineage rows sealed into the audit chain."
)
# The chain head, published on every seal (the log line "audit chain sealed" has the full
# "seq:hash"): a cut of the newest seals shows against it.
AUDIT_HEAD_SEQ = Gauge(
    "comcenter_audit_head_seq", "Sequence number of the newest audit seal.", multiprocess_mode="max"
)
AUDIT_HEAD_FINGERPRINT = Gauge(
    "comcenter_audit_head_fingerprint",
    "The first 48 bits of the newest audit seal's hash, as a number.",
    multiprocess_mode="mostrecent",
)
RETENTION_PURGED = Counter(
    "comcenter_retention_purged_total",
    "Rows deleted by the retention purges, by table.",
    ["table"],
)
GUARD_TRIPS = Counter(
    "comcenter_guard_trips_total",
    "Incidents the automatic guard opened, by trigger (errors_5xx, jwt_failures, queue_depth, "
    "ack_p95).",
    ["trigger"],
)
