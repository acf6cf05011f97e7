"""`make bench`: replay events against a real comcenter and check nothing was lost.

    .venv/bin/python -m bench.replay            # 30,000 events at 250/s (about 2 minutes)
    BENCH_EVENTS=2000 .venv/bin/python -m bench.replay      # the CI smoke variant
    BENCH_MODE=max .venv/bin/python -m bench.replay         # highest rate with P95 <= 120 ms

It starts comcenter itself on 127.0.0.1: PostgreSQL (DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/comcenter_bench, created if missing, migrated), Redis
(REDIS_URL, default redis://127.0.0.1:6379/6), gunicorn with BENCH_WEB_WORKERS sync workers
and the django-q2 cluster with BENCH_Q_WORKERS workers, in dry run (DISABLE_SEND=true), with
the demo routes (`load_demo`: two event types, each routed to email and SMS). A fresh service
account per run scopes every check, so earlier runs in the same database do not matter.

It replays BENCH_EVENTS requests at BENCH_RATE per second with an open-loop generator
(bench/loadgen.py) and the mix of bench/workload.py, waits for the pipeline to drain, then
checks from the database: `lost` (accepted events without all their messages),
`duplicate_sends` and `ordering_violations`, and from the answers: `errors` (anything but the
contract's 202/200/409, or no answer within BENCH_REQUEST_TIMEOUT, 30 s) and
`idempotency_violations`. It prints a table
and writes bench/results/replay-<UTC timestamp>.json (max mode: max-<timestamp>.json).

Exit status: 1 when a correctness check fails (lost, duplicate sends, ordering violations,
errors, idempotency violations, or the pipeline did not drain); never because of latency,
which is reported, not asserted.

Knobs: BENCH_EVENTS, BENCH_RATE, BENCH_MODE (replay|max), BENCH_WEB_WORKERS (4),
BENCH_Q_WORKERS (2; 0 measures the acknowledgement path alone: no cluster, no delivery checks),
BENCH_DRAIN_TIMEOUT (600 s), BENCH_WARMUP (500 requests), and for max
mode BENCH_MAX_START (300/s), BENCH_STEP_SECONDS (20), BENCH_MAX_SECONDS (1200),
BENCH_P95_LIMIT_MS (120).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import harness
from bench.checks import database_checks, judge_answers, wait_for_drain
from bench.loadgen import nearest_rank, replay
from bench.workload import Request, generate

RESULTS = harness.ROOT / "bench" / "results"


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    return {
        # Other work on the machine competes for the same cores: shown, not hidden.
        "loadavg_at_start": os.getloadavg()[0],
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def database_version() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return f"PostgreSQL {cursor.fetchone()[0]}"


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=harness.ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except OSError:
        return ""


def latency_summary(answers: list[Any]) -> dict[str, float | None]:
    latencies = [a.latency_ms for a in answers if a is not None and a.status != 0]

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 2)

    return {
        "p50_ack_ms": rounded(nearest_rank(latencies, 0.50)),
        "p95_ack_ms": rounded(nearest_rank(latencies, 0.95)),
        "p99_ack_ms": rounded(nearest_rank(latencies, 0.99)),
        "max_ack_ms": rounded(max(latencies) if latencies else None),
    }


def run_step(
    server: harness.Server,
    credentials: harness.Credentials,
    *,
    run: str,
    events: int,
    rate: float,
    label: str,
) -> dict[str, Any]:
    """One replay of `events` requests at `rate`; the answers judged, latencies summarised."""
    requests: list[Request] = generate(run=run, total=events)
    token = harness.fetch_token(server.base_url, credentials)
    answers, sending_seconds = replay(
        base_url=server.base_url, token=token, requests=requests, rate=rate, label=label
    )
    verdict = judge_answers(requests, answers)
    return {
        "events": len(requests),
        "accepted": verdict.accepted,
        "errors": verdict.errors,
        "idempotency_violations": verdict.idempotency_violations,
        "new_events": verdict.new_events,
        "answers_by_status": verdict.by_status,
        "problems": verdict.examples,
        "target_rate_rps": rate,
        "rate_rps": round(len(requests) / sending_seconds, 1) if sending_seconds else None,
        **latency_summary(answers),
    }


def drain_and_check(credentials: harness.Credentials) -> dict[str, Any]:
    if _int("BENCH_Q_WORKERS", 2) == 0:
        # Ack-path measurement: no cluster ran, so delivery is neither drained nor checked.
        return {"delivery_checked": False}

    def progress(state: Any) -> None:
        sys.stderr.write(
            f"\rdraining: {state.outbox_pending} events in the outbox, "
            f"{state.active_messages} messages in flight      "
        )
        sys.stderr.flush()

    drained, seconds = wait_for_drain(
        credentials.caller, timeout=_float("BENCH_DRAIN_TIMEOUT", 600), progress=progress
    )
    sys.stderr.write("\n")
    return {
        "drained": drained,
        "drain_seconds": round(seconds, 1),
        **database_checks(credentials.caller),
    }


def correctness_failures(result: dict[str, Any]) -> list[str]:
    failures = [
        f"{name}={result[name]}"
        for name in (
            "lost",
            "duplicate_sends",
            "ordering_violations",
            "errors",
            "idempotency_violations",
        )
        if result.get(name)
    ]
    if not result.get("drained", True):
        failures.append("the pipeline did not drain")
    return failures


def print_table(title: str, rows: list[tuple[str, Any]]) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}")
    print("-" * (width + 24))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print("-" * (width + 24))


def write_result(prefix: str, stamp: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{prefix}-{stamp}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    return path


def mode_replay(
    server: harness.Server, credentials: harness.Credentials, *, run: str, base: dict[str, Any]
) -> dict[str, Any]:
    events = _int("BENCH_EVENTS", 30000)
    rate = _float("BENCH_RATE", 250)
    warmup = min(_int("BENCH_WARMUP", 500), max(50, events // 10))
    # Warm-up: every worker imports, connects and fills its caches before the measurement.
    run_step(server, credentials, run=f"{run}w", events=warmup, rate=rate, label="warm-up")
    step = run_step(server, credentials, run=run, events=events, rate=rate, label="replay ")
    return {**base, **step, "warmup_events": warmup, **drain_and_check(credentials)}


def mode_max(
    server: harness.Server, credentials: harness.Credentials, *, run: str, base: dict[str, Any]
) -> dict[str, Any]:
    """Raise the rate by 25 % per step while P95 <= the limit and nothing errs, then bisect
    between the last good and the first bad rate; bounded by BENCH_MAX_SECONDS."""
    limit_ms = _float("BENCH_P95_LIMIT_MS", 120)
    step_seconds = _float("BENCH_STEP_SECONDS", 20)
    budget = time.monotonic() + _float("BENCH_MAX_SECONDS", 1200)
    rate = _float("BENCH_MAX_START", 300)
    steps: list[dict[str, Any]] = []

    def attempt(rate: float) -> bool:
        events = int(rate * step_seconds)
        label = f"{rate:6.0f}/s"
        result = run_step(
            server, credentials, run=f"{run}r{len(steps)}", events=events, rate=rate, label=label
        )
        drained = drain_and_check(credentials)
        result["drain_seconds"] = drained["drain_seconds"]
        steps.append(result)
        p95 = result["p95_ack_ms"]
        return result["errors"] == 0 and p95 is not None and p95 <= limit_ms

    run_step(server, credentials, run=f"{run}w", events=500, rate=rate, label="warm-up")
    good, bad = 0.0, 0.0
    while time.monotonic() < budget and rate <= 5000:
        if attempt(rate):
            good = rate
            rate = round(rate * 1.25)
        else:
            bad = rate
            break
    for _ in range(3):
        if not bad or time.monotonic() >= budget or bad - good <= max(10.0, good * 0.04):
            break
        middle = round((good + bad) / 2)
        if attempt(middle):
            good = middle
        else:
            bad = middle
    final = drain_and_check(credentials)
    return {
        **base,
        "p95_limit_ms": limit_ms,
        "step_seconds": step_seconds,
        "max_rate_rps": good,
        "first_failing_rate_rps": bad or None,
        "steps": steps,
        "events": sum(s["events"] for s in steps),
        "accepted": sum(s["accepted"] for s in steps),
        "errors": sum(s["errors"] for s in steps),
        "idempotency_violations": sum(s["idempotency_violations"] for s in steps),
        **final,
    }


def main() -> int:
    mode = os.environ.get("BENCH_MODE", "replay")
    if mode not in {"replay", "max"}:
        raise SystemExit("BENCH_MODE must be replay or max")
    web_workers = _int("BENCH_WEB_WORKERS", 4)
    q_workers = _int("BENCH_Q_WORKERS", 2)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run = f"b{stamp}"
    env = harness.bench_environment(
        web_workers=web_workers,
        q_workers=q_workers,
        port=harness.free_port(),
        metrics_dir=harness.new_metrics_dir(),
    )
    # This process reads the same database for the checks.
    for name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "AUDIT_KEY", "DJANGO_SETTINGS_MODULE"):
        os.environ[name] = env[name]
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    if harness.create_database(env["DATABASE_URL"]):
        print(f"created the database of {env['DATABASE_URL']}", file=sys.stderr)
    credentials = harness.prepare(env, run=run)

    import django

    django.setup()
    log_dir = Path(env["PROMETHEUS_MULTIPROC_DIR"]).with_name(f"comcenter-bench-{stamp}-logs")
    log_dir.mkdir(exist_ok=True)
    server = harness.Server(env=env, log_dir=log_dir)
    server.start()
    base = {
        "mode": mode,
        "started_at": stamp,
        "database": database_version(),
        "machine": machine(),
        "commit": git_commit(),
        "web_workers": web_workers,
        "q_workers": q_workers,
        "server_logs": str(log_dir),
    }
    try:
        if mode == "replay":
            result = mode_replay(server, credentials, run=run, base=base)
        else:
            result = mode_max(server, credentials, run=run, base=base)
    finally:
        server.stop()
    failures = correctness_failures(result)
    result["correct"] = not failures
    path = write_result("replay" if mode == "replay" else "max", stamp, result)
    rows = [
        (name, result.get(name))
        for name in (
            "events",
            "accepted",
            "errors",
            "idempotency_violations",
            "rate_rps",
            "p50_ack_ms",
            "p95_ack_ms",
            "p99_ack_ms",
            "max_ack_ms",
            "max_rate_rps",
            "lost",
            "duplicate_sends",
            "ordering_violations",
            "drain_seconds",
            "messages",
            "database",
        )
        if name in result
    ]
    rows.append(("machine", f"{result['machine']['cores']} cores, {result['machine']['cpu']}"))
    print_table(f"comcenter replay ({mode}): {path.relative_to(harness.ROOT)}", rows)
    if mode == "max":
        for step in result["steps"]:
            print(
                f"  {step['target_rate_rps']:>7}/s  P95 {step['p95_ack_ms']} ms  "
                f"P99 {step['p99_ack_ms']} ms  errors {step['errors']}"
            )
    if failures:
        print("CORRECTNESS FAILURES: " + ", ".join(failures))
        return 1
    print("correct: nothing lost, no duplicate sends, no ordering violations, no errors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
