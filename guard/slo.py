"""The SLO report, the error-budget ledger of SPEC §8: per UTC day and for the whole window,
each SLO's measured value, its target, and how much of its error budget was used.

Every SLO is read as a ratio of bad to all with an allowed fraction (the budget), so "used"
means the same thing everywhere: bad / all / allowed (1.0 = the whole budget spent).

| SLO | from | bad / all | allowed |
|---|---|---|---|
| uptime >= 99.9 % | the guard's readiness probes (every run) | failed probes / probes | 0.1 % |
| 5xx < 0.5 % | answers counted by every web node | 5xx faults / answers | 0.5 % |
| P95 ack <= 120 ms | ack latencies of 202/200 answers | acks over 120 ms / acks | 5 % |
| auth success >= 98 % | bearer attempts on the intake | 401s / attempts | 2 % |
| DLQ ratio < 0.5 % | messages finished in the period | dead / finished | 0.5 % |
| queue stable | hourly mean queue depth | hours over 2x max(median, floor) | none |

A period without data has no value (`None`), and uses no budget: the report says "no data"
rather than inventing 100 %. Queue stability allows nothing: one hour over spends it all."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings

from guard.measurements import HOUR, ack_bounds, measurements_read, measurements_sum


@dataclass(frozen=True)
class SloLine:
    name: str
    target: str
    value: float | None
    met: bool | None
    budget_used: float | None
    budget_left: float | None
    detail: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _line(
    name: str,
    target: str,
    *,
    bad: float,
    total: float,
    allowed: float,
    value: float | None,
    met: bool | None,
    detail: str,
) -> SloLine:
    if not total:
        return SloLine(name, target, None, None, None, None, "no data")
    # An SLO that allows nothing (queue stability) spends its whole budget on one miss.
    used = (bad / total) / allowed if allowed else (1.0 if bad else 0.0)
    return SloLine(name, target, value, met, round(used, 4), round(max(0.0, 1.0 - used), 4), detail)


def _dlq_counts(since: datetime, until: datetime) -> tuple[int, int]:
    from django.db.models import Count

    from delivery.models import FINAL_STATES, Message, MessageState

    finished = dict(
        Message.objects.filter(state__in=FINAL_STATES, updated_at__gte=since, updated_at__lt=until)
        .values("state")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("state", "n")
    )
    return finished.get(MessageState.DEAD, 0), sum(finished.values())


def _lines(hours: dict[int, dict[str, int]], since: datetime, until: datetime) -> list[SloLine]:
    counts = measurements_sum(hours.values())
    lines = []
    probes, probes_ok = counts.get("probe_n", 0), counts.get("probe_ok", 0)
    uptime = probes_ok / probes if probes else None
    lines.append(
        _line(
            "uptime",
            ">= 99.9 %",
            bad=probes - probes_ok,
            total=probes,
            allowed=0.001,
            value=uptime,
            met=uptime is not None and uptime >= 0.999,
            detail=f"{probes_ok} of {probes} readiness probes passed",
        )
    )
    answers, errors = counts.get("answers", 0), counts.get("errors", 0)
    ratio = errors / answers if answers else None
    lines.append(
        _line(
            "5xx_ratio",
            "< 0.5 %",
            bad=errors,
            total=answers,
            allowed=0.005,
            value=ratio,
            met=ratio is not None and ratio < 0.005,
            detail=f"{errors} 5xx of {answers} answers",
        )
    )
    acks = counts.get("ack_n", 0)
    slo_ms = float(settings.ACK_P95_SLO_MS)
    slow = sum(
        counts.get(f"ack_le_{bound:g}", 0) for bound in ack_bounds() if bound > slo_ms
    ) + counts.get("ack_le_inf", 0)
    p95 = _p95(counts)
    lines.append(
        _line(
            "p95_ack_ms",
            f"<= {slo_ms:g} ms",
            bad=slow,
            total=acks,
            allowed=0.05,
            value=p95,
            met=p95 is not None and p95 <= slo_ms,
            detail=f"{slow} of {acks} acks over {slo_ms:g} ms (P95 is a bucket bound)",
        )
    )
    failed, attempts = (
        counts.get("auth_fail", 0),
        counts.get("auth_fail", 0) + counts.get("auth_ok", 0),
    )
    success = 1 - failed / attempts if attempts else None
    lines.append(
        _line(
            "auth_success",
            ">= 98 %",
            bad=failed,
            total=attempts,
            allowed=0.02,
            value=success,
            met=success is not None and success >= 0.98,
            detail=f"{failed} of {attempts} bearer attempts failed",
        )
    )
    dead, finished = _dlq_counts(since, until)
    dlq = dead / finished if finished else None
    lines.append(
        _line(
            "dlq_ratio",
            "< 0.5 %",
            bad=dead,
            total=finished,
            allowed=0.005,
            value=dlq,
            met=dlq is not None and dlq < 0.005,
            detail=f"{dead} dead of {finished} finished messages",
        )
    )
    means = [c["queue_sum"] / c["queue_n"] for c in hours.values() if c.get("queue_n")]
    limit = 2 * max(statistics.median(means), float(settings.GUARD_QUEUE_FLOOR)) if means else 0.0
    over = sum(1 for mean in means if mean > limit)
    lines.append(
        _line(
            "queue_stable",
            "no hour over 2x max(median, GUARD_QUEUE_FLOOR)",
            bad=over,
            total=len(means),
            allowed=0.0,
            value=max(means) if means else None,
            met=over == 0,
            detail=f"{over} of {len(means)} hours over {limit:g} (highest hourly mean shown)",
        )
    )
    return lines


def _p95(counts: dict[str, int]) -> float | None:
    from guard.measurements import ack_percentile

    value = ack_percentile(counts, 0.95)
    return None if value is None or math.isinf(value) else value


def _day_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def slo_report(*, since: datetime, until: datetime) -> dict[str, Any]:
    """The ledger from `since` to `until` (aware datetimes): one entry per UTC day touched,
    and one for the whole window."""
    hours = measurements_read(resolution=HOUR, since=since.timestamp(), until=until.timestamp())
    days = []
    day = _day_start(since)
    while day < until:
        start, end = max(day, since), min(day + timedelta(days=1), until)
        inside = {b: c for b, c in hours.items() if start.timestamp() <= b < end.timestamp()}
        days.append(
            {
                "day": day.date().isoformat(),
                "slos": [x.as_json() for x in _lines(inside, start, end)],
            }
        )
        day += timedelta(days=1)
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "window": {"slos": [line.as_json() for line in _lines(hours, since, until)]},
        "days": days,
    }


def _shown(line: dict[str, Any]) -> str:
    value = line["value"]
    if value is None:
        return "no data"
    if line["name"] in {"uptime", "5xx_ratio", "auth_success", "dlq_ratio"}:
        return f"{value * 100:.3f} %"
    return f"{value:g}"


def slo_report_text(report: dict[str, Any]) -> list[str]:
    """The ledger as aligned text lines (the command and the admin page print these)."""
    out = [f"SLO report {report['since']} .. {report['until']}"]
    periods = [("window", report["window"])] + [(d["day"], d) for d in report["days"]]
    for title, period in periods:
        out.append(f"{title}:")
        for line in period["slos"]:
            verdict = {True: "met", False: "MISSED", None: "-"}[line["met"]]
            if line["budget_used"] is None:
                budget = "budget -"
            else:
                budget = (
                    f"budget used {line['budget_used'] * 100:.1f} % "
                    f"left {line['budget_left'] * 100:.1f} %"
                )
            out.append(
                f"  {line['name']:<13} {_shown(line):>12}  target {line['target']:<10} "
                f"{verdict:<6} {budget}"
            )
    return out
