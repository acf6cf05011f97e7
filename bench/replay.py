"""`make bench`: replay events against a real comcenter, check nothing was lost, and say what
each event cost against a floor measured in the same invocation.

    .venv/bin/python -m bench.replay            # 30,000 at 250/s: 3-4 minutes, floor included
    BENCH_EVENTS=2000 .venv/bin/python -m bench.replay      # the CI smoke variant
    BENCH_MODE=max .venv/bin/python -m bench.replay         # highest rate with P95 <= 120 ms
    BENCH_MODE=soak .venv/bin/python -m bench.replay        # 250/s for 30 min, P95 per minute

Each invocation starts its own PostgreSQL cluster (initdb in a temporary directory, PostgreSQL's
defaults: autovacuum, fsync and synchronous_commit on) and its own Redis server, on free
loopback ports, and removes both at the end (bench/stack.py): no run inherits another's dead
tuples, table history or queued tasks. BENCH_STACK=shared uses the servers of DATABASE_URL
and REDIS_URL instead (then the database's and Redis's CPU is not attributed). The settings
that matter and the server versions are recorded in the result.

The floor (bench/floor: a bare DRF view with a static bearer token and one ORM INSERT) runs on
the same web server and cluster twice, before comcenter and after it: BENCH_FLOOR_EVENTS
(5,000) requests at BENCH_RATE each time. `floor` pools the two windows (their requests'
latencies, their CPU per request weighted by requests) and lists each under `floor.windows`;
`floor.drift` is the second window's CPU per request over the first's. A slow stretch of the
host during one floor window would otherwise move the ratio by 15-25 % (bench/NOTES.md);
bracketed, it shows as drift and weighs half. Comcenter: the web server of BENCH_SERVER
(gunicorn, granian or granian-asgi) with BENCH_WEB_WORKERS processes and the django-q2 cluster
with BENCH_Q_WORKERS workers, in dry run (DISABLE_SEND=true), with the demo routes
(`load_demo`: two event types, each routed to email and SMS). It replays BENCH_EVENTS requests
at BENCH_RATE per second with an open-loop generator (bench/loadgen.py) and the mix of
bench/workload.py, waits for the pipeline to drain, then checks from the database: `lost`
(accepted events without all their messages), `duplicate_sends` and `ordering_violations`, and
from the answers: `errors` (anything but the contract's 202/200/409, or no answer within
BENCH_REQUEST_TIMEOUT, 30 s) and `idempotency_violations`.

CPU is read from /proc (bench/cpu.py) for each component's process tree (`web`, `workers`,
`database`, `redis`) over the measured window only (from the first measured request to the
drain; warm-up excluded) and divided by the requests sent: `cpu_ms_per_event`, for comcenter
and for the floor, and `cpu_ratio_to_floor` (total / the floor's total). CPU time, unlike
latency, hardly changes when other work shares the cores, so these figures compare across
runs on a loaded machine; the latencies do not, and `machine.loadavg_at_start` says how loaded
it was. On a virtual machine the host may also run other guests on the same physical cores:
`host_steal_percent` is the share of the window's CPU time taken from ours (/proc/stat), which
stalls requests without showing in any CPU figure; `io_stall_percent` is the share of the
window in which everything runnable waited for the disk (/proc/pressure/io), which a commit's
WAL flush, and so every acknowledgement, waits behind. It prints a table and writes
bench/results/<mode>-<UTC timestamp>.json.

Exit status: 1 when a correctness check fails (lost, duplicate sends, ordering violations,
errors, idempotency violations, or the pipeline did not drain); never because of latency or
cost, which are reported, not asserted.

Knobs: BENCH_EVENTS, BENCH_RATE, BENCH_MODE (replay|max|soak), BENCH_SERVER, BENCH_STACK,
BENCH_WEB_WORKERS (4), BENCH_Q_WORKERS (2; 0 measures the acknowledgement path alone: no
cluster, no delivery checks), BENCH_FLOOR (1; 0 skips the floor), BENCH_FLOOR_EVENTS (5,000 per
window), BENCH_DRAIN_TIMEOUT (600 s), BENCH_WARMUP (500 requests), BENCH_PG_STATEMENTS (0; 1
loads pg_stat_statements into the private cluster, planning counted, and the replay mode adds
the measured window's top statements per event as `pg_statements`), BENCH_PG_OPTIONS (extra
settings of the private cluster, `;`-separated: `log_lock_waits=on;deadlock_timeout=20ms`),
BENCH_TRACE (a file: each answer's wall-clock time, latency and step, appended, to line a stall
up with the servers' logs and the host's steal); for max mode BENCH_MAX_START (300/s),
BENCH_STEP_SECONDS (20), BENCH_MAX_SECONDS (1200), BENCH_P95_LIMIT_MS (120); for soak mode
BENCH_SOAK_SECONDS (1,800) and BENCH_SOAK_WINDOW (60 s)."""

from __future__ import annotations

import functools
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import cpu, harness
from bench.checks import database_checks, judge_answers, wait_for_drain
from bench.loadgen import nearest_rank, replay
from bench.stack import (
    Stack,
    free_port,
    private_stack,
    shared_stack,
    statements_reset,
    statements_top,
)
from bench.workload import Request, generate
from comcenter.run import DEFAULT_WEB_SERVER

RESULTS = harness.ROOT / "bench" / "results"
# What a replay step reports of its answers (also each soak window's figures).
STEP_FIGURES = (
    "events",
    "accepted",
    "errors",
    "idempotency_violations",
    "rate_rps",
    "p50_ack_ms",
    "p95_ack_ms",
    "p99_ack_ms",
    "max_ack_ms",
)


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def machine() -> dict[str, Any]:
    return {
        # Other work on the machine competes for the same cores: shown, not hidden.
        "loadavg_at_start": os.getloadavg()[0],
        "cores": os.cpu_count(),
        "cpu": cpu.cpu_model(),
        "python": platform.python_version(),
        "os": platform.platform(),
    }


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


def latency_summary(latencies: list[float]) -> dict[str, float | None]:
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
    requests: list[Request] | None = None,
) -> tuple[dict[str, Any], list[float]]:
    """One replay of `events` requests at `rate`: the answers judged and their latencies
    summarised, and the latencies (ms) of every answer."""
    requests = requests if requests is not None else generate(run=run, total=events)
    token = harness.fetch_token(server.base_url, credentials)
    answers, sending_seconds = replay(
        base_url=server.base_url, token=token, requests=requests, rate=rate, label=label
    )
    verdict = judge_answers(requests, answers)
    latencies = [a.latency_ms for a in answers if a is not None and a.status != 0]
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
        **latency_summary(latencies),
    }, latencies


def drain(credentials: harness.Credentials) -> dict[str, Any]:
    """Wait until the run's events are handed off and its messages final (nothing to wait
    for when no cluster runs: the ack path alone)."""
    if _int("BENCH_Q_WORKERS", 2) == 0:
        return {}

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
    return {"drained": drained, "drain_seconds": round(seconds, 1)}


def delivery_checks(credentials: harness.Credentials) -> dict[str, Any]:
    if _int("BENCH_Q_WORKERS", 2) == 0:
        # Ack-path measurement: no cluster ran, so delivery is neither drained nor checked.
        return {"delivery_checked": False}
    return database_checks(credentials.caller)


def measure_floor(
    *, stack: Stack, env: dict, web_server: str, rate: float, log_dir: Path, run: str
) -> dict[str, Any]:
    """The floor (bench/floor: a bare DRF view, one ORM INSERT) on the same web server,
    workers and database cluster: BENCH_FLOOR_EVENTS requests at `rate` after a warm-up."""
    events = _int("BENCH_FLOOR_EVENTS", 5000)
    floor_env = harness.floor_environment(
        env, database_url=stack.floor_database_url, port=free_port()
    )
    floor_env["PROMETHEUS_MULTIPROC_DIR"] = harness.new_metrics_dir()
    harness.manage(floor_env, "migrate", "--noinput")
    server = harness.Server(
        env=floor_env, log_dir=log_dir, web_server=web_server, target="bench.floor", workers=False
    )
    server.start()
    try:
        token = floor_env["FLOOR_TOKEN"]
        warmup = generate(run=f"{run}fw", total=min(500, events))
        replay(base_url=server.base_url, token=token, requests=warmup, rate=rate, label="floor w")
        requests = generate(run=f"{run}f", total=events)
        window = Measured({**server.pids(), **stack.pids})
        answers, _ = replay(
            base_url=server.base_url, token=token, requests=requests, rate=rate, label="floor  "
        )
        figures = window.close(len(requests))
    finally:
        server.stop()
    return {
        "events": len(requests),
        "errors": sum(1 for a in answers if a is None or a.status != 202),
        "latencies": [a.latency_ms for a in answers if a is not None and a.status != 0],
        **figures,
    }


def _weighted(windows: list[dict[str, Any]], value: Callable[[dict[str, Any]], Any]) -> Any:
    """The mean of `value` over the windows that have it, weighted by their events."""
    pairs = [(w["events"], v) for w in windows if (v := value(w)) is not None]
    weight = sum(events for events, _ in pairs)
    return round(sum(events * v for events, v in pairs) / weight, 3) if weight else None


def pooled_floor(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """One floor from its measured windows (each `measure_floor`'s result): the latencies of
    all their requests, the CPU per request of each component weighted by requests, steal and
    I/O stall likewise (the windows run at one rate, so requests stand for time), each window
    without its latencies under `windows`, and `drift`: the last window's total CPU per
    request over the first's."""
    latencies = [ms for w in windows for ms in w["latencies"]]
    components = dict.fromkeys(name for w in windows for name in w["cpu_ms_per_event"])
    first, last = (w["cpu_ms_per_event"]["total"] for w in (windows[0], windows[-1]))
    return {
        "events": sum(w["events"] for w in windows),
        "errors": sum(w["errors"] for w in windows),
        **latency_summary(latencies),
        "cpu_ms_per_event": {
            name: _weighted(windows, lambda w, name=name: w["cpu_ms_per_event"].get(name))
            for name in components
        },
        "host_steal_percent": _weighted(windows, lambda w: w.get("host_steal_percent")),
        "io_stall_percent": _weighted(windows, lambda w: w.get("io_stall_percent")),
        "drift": round(last / first, 3) if first and last else None,
        "windows": [
            {
                **{k: v for k, v in w.items() if k != "latencies"},
                **latency_summary(w["latencies"]),
            }
            for w in windows
        ],
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


class Run:
    """One invocation's comcenter: its stack, server, service account and run id."""

    def __init__(
        self, *, stack: Stack, server: harness.Server, credentials: harness.Credentials, id: str
    ) -> None:
        self.stack = stack
        self.server = server
        self.credentials = credentials
        self.id = id

    def components(self) -> dict[str, int]:
        return {**self.server.pids(), **self.stack.pids}

    def step(
        self,
        *,
        run_id: str,
        events: int,
        rate: float,
        label: str,
        requests: list[Request] | None = None,
    ) -> tuple[dict[str, Any], list[float]]:
        return run_step(
            self.server,
            self.credentials,
            run=run_id,
            events=events,
            rate=rate,
            label=label,
            requests=requests,
        )

    def drain(self) -> dict[str, Any]:
        return drain(self.credentials)

    def checks(self) -> dict[str, Any]:
        return delivery_checks(self.credentials)


class Measured:
    """CPU per event of each component over a window that the caller opens and closes."""

    def __init__(self, components: dict[str, int]) -> None:
        self.components = components
        self.start = cpu.sample(components)

    def close(self, events: int) -> dict[str, Any]:
        """The window's `cpu_ms_per_event` over `events`, and what the host took from it:
        `host_steal_percent` and `io_stall_percent` (bench/cpu.py)."""
        end = cpu.sample(self.components)
        return {
            "cpu_ms_per_event": cpu.per_event_ms(self.start, end, events=events),
            "host_steal_percent": cpu.steal_percent(self.start, end),
            "io_stall_percent": cpu.io_stall_percent(self.start, end),
        }


def mode_replay(run: Run) -> dict[str, Any]:
    events = _int("BENCH_EVENTS", 30000)
    rate = _float("BENCH_RATE", 250)
    warmup = min(_int("BENCH_WARMUP", 500), max(50, events // 10))
    # Warm-up: every worker imports, connects and fills its caches before the measurement.
    run.step(run_id=f"{run.id}w", events=warmup, rate=rate, label="warm-up")
    run.drain()
    # The measured window: from the first request to the last message final.
    if run.stack.statements:
        statements_reset(run.stack.database_url)
    window = Measured(run.components())
    step, _ = run.step(run_id=run.id, events=events, rate=rate, label="replay ")
    drained = run.drain()
    step.update(window.close(step["events"]))
    if run.stack.statements:  # read before the checks' own queries
        step["pg_statements"] = statements_top(run.stack.database_url, events=step["events"])
    return {**step, "warmup_events": warmup, **drained, **run.checks()}


def mode_max(run: Run) -> dict[str, Any]:
    """Raise the rate by 25 % per step while P95 <= the limit and nothing errs, then bisect
    between the last good and the first bad rate; bounded by BENCH_MAX_SECONDS."""
    limit_ms = _float("BENCH_P95_LIMIT_MS", 120)
    step_seconds = _float("BENCH_STEP_SECONDS", 20)
    budget = time.monotonic() + _float("BENCH_MAX_SECONDS", 1200)
    rate = _float("BENCH_MAX_START", 300)
    steps: list[dict[str, Any]] = []

    def attempt(rate: float) -> bool:
        events = int(rate * step_seconds)
        window = Measured(run.components())
        result, _ = run.step(
            run_id=f"{run.id}r{len(steps)}", events=events, rate=rate, label=f"{rate:6.0f}/s"
        )
        result.update(run.drain())
        result.update(window.close(result["events"]))
        steps.append(result)
        p95 = result["p95_ack_ms"]
        return result["errors"] == 0 and p95 is not None and p95 <= limit_ms

    run.step(run_id=f"{run.id}w", events=500, rate=rate, label="warm-up")
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
    drained = run.drain()
    return {
        "p95_limit_ms": limit_ms,
        "step_seconds": step_seconds,
        "max_rate_rps": good,
        "first_failing_rate_rps": bad or None,
        "steps": steps,
        "events": sum(s["events"] for s in steps),
        "accepted": sum(s["accepted"] for s in steps),
        "errors": sum(s["errors"] for s in steps),
        "idempotency_violations": sum(s["idempotency_violations"] for s in steps),
        **drained,
        **run.checks(),
    }


def mode_soak(run: Run) -> dict[str, Any]:
    """BENCH_RATE (250/s) for BENCH_SOAK_SECONDS (1,800), one replay per BENCH_SOAK_WINDOW
    (60 s) back to back: the P95 of each window, and the P95 of the first five windows
    against the last five (fewer when the soak is shorter than ten windows)."""
    rate = _float("BENCH_RATE", 250)
    window_seconds = _float("BENCH_SOAK_WINDOW", 60)
    windows = max(1, round(_float("BENCH_SOAK_SECONDS", 1800) / window_seconds))
    per_window = int(rate * window_seconds)
    # Generated up front (each window its own ordering keys), so no window waits for the
    # generator of the next.
    plans = [generate(run=f"{run.id}m{n}", total=per_window) for n in range(windows)]
    run.step(run_id=f"{run.id}w", events=min(500, per_window), rate=rate, label="warm-up")
    run.drain()
    measured = Measured(run.components())
    minutes: list[dict[str, Any]] = []
    latencies: list[list[float]] = []
    for n, requests in enumerate(plans):
        step, window_latencies = run.step(
            run_id=f"{run.id}m{n}",
            events=per_window,
            rate=rate,
            label=f"window {n + 1:>3}",
            requests=requests,
        )
        minutes.append({key: step[key] for key in STEP_FIGURES})
        latencies.append(window_latencies)
    drained = run.drain()
    events = sum(m["events"] for m in minutes)
    edge = max(1, min(5, windows // 2))
    first = nearest_rank([v for w in latencies[:edge] for v in w], 0.95)
    last = nearest_rank([v for w in latencies[-edge:] for v in w], 0.95)
    worst = max((m["p95_ack_ms"] or 0.0) for m in minutes)
    return {
        "target_rate_rps": rate,
        "window_seconds": window_seconds,
        "windows": minutes,
        "events": events,
        "accepted": sum(m["accepted"] for m in minutes),
        "errors": sum(m["errors"] for m in minutes),
        "idempotency_violations": sum(m["idempotency_violations"] for m in minutes),
        "worst_window_p95_ack_ms": worst,
        "edge_windows": edge,
        "first_windows_p95_ack_ms": None if first is None else round(first, 2),
        "last_windows_p95_ack_ms": None if last is None else round(last, 2),
        "last_to_first_p95": round(last / first, 2) if first and last else None,
        **measured.close(events),
        **drained,
        **run.checks(),
    }


MODES = {"replay": mode_replay, "max": mode_max, "soak": mode_soak}


def open_stack() -> Stack:
    """BENCH_STACK=private (default): a PostgreSQL cluster and a Redis server of this run's
    own; shared: the servers of DATABASE_URL and REDIS_URL (defaults: the local standard
    ports, database comcenter_bench, Redis db 6)."""
    kind = os.environ.get("BENCH_STACK", "private")
    statements = bool(_int("BENCH_PG_STATEMENTS", 0))
    if kind == "private":
        return private_stack(statements=statements)
    if statements:
        raise SystemExit("BENCH_PG_STATEMENTS needs the private stack (its server settings)")
    if kind == "shared":
        return shared_stack(
            os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/comcenter_bench"),
            os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/6"),
        )
    raise SystemExit("BENCH_STACK must be private or shared")


def attach_floor(result: dict[str, Any], floor: dict[str, Any]) -> None:
    result["floor"] = floor
    total = (result.get("cpu_ms_per_event") or {}).get("total")
    floor_total = floor["cpu_ms_per_event"]["total"]
    result["cpu_ratio_to_floor"] = round(total / floor_total, 2) if total and floor_total else None


def main() -> int:
    mode = os.environ.get("BENCH_MODE", "replay")
    if mode not in MODES:
        raise SystemExit(f"BENCH_MODE must be one of {', '.join(MODES)}")
    web_server = os.environ.get("BENCH_SERVER", DEFAULT_WEB_SERVER)
    web_workers = _int("BENCH_WEB_WORKERS", 4)
    q_workers = _int("BENCH_Q_WORKERS", 2)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_id = f"b{stamp}"
    log_dir = Path(tempfile.mkdtemp(prefix=f"comcenter-bench-{stamp}-logs-"))
    # SIGTERM unwinds like Ctrl-C, so the servers and the private stack are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    stack = open_stack()
    try:
        env = harness.bench_environment(
            database_url=stack.database_url,
            redis_url=stack.redis_url,
            web_workers=web_workers,
            q_workers=q_workers,
            port=free_port(),
            metrics_dir=harness.new_metrics_dir(),
        )
        # This process reads the same database for the checks.
        for name in (
            "DATABASE_URL",
            "REDIS_URL",
            "SECRET_KEY",
            "AUDIT_KEY",
            "DJANGO_SETTINGS_MODULE",
        ):
            os.environ[name] = env[name]
        os.environ.setdefault("LOG_LEVEL", "WARNING")
        base: dict[str, Any] = {
            "mode": mode,
            "started_at": stamp,
            "stack": stack.kind,
            "database": stack.settings["postgres"]["server_version"],
            "server_settings": stack.settings,
            "machine": machine(),
            "commit": git_commit(),
            "web_server": web_server,
            "web_workers": web_workers,
            "q_workers": q_workers,
            "server_logs": str(log_dir),
        }
        floor = (
            functools.partial(
                measure_floor,
                stack=stack,
                env=env,
                web_server=web_server,
                rate=_float("BENCH_RATE", 250),
                log_dir=log_dir,
            )
            if _int("BENCH_FLOOR", 1)
            else None
        )
        floor_windows = [floor(run=f"{run_id}b")] if floor else []
        credentials = harness.prepare(env, run=run_id)

        import django

        django.setup()
        server = harness.Server(
            env=env, log_dir=log_dir, web_server=web_server, workers=q_workers > 0
        )
        server.start()
        try:
            run = Run(stack=stack, server=server, credentials=credentials, id=run_id)
            result = {**base, **MODES[mode](run)}
        finally:
            server.stop()
        if floor:
            floor_windows.append(floor(run=f"{run_id}a"))
    finally:
        stack.close()
    if floor_windows:
        attach_floor(result, pooled_floor(floor_windows))
    failures = correctness_failures(result)
    result["correct"] = not failures
    path = write_result(mode, stamp, result)
    print_summary(result, path)
    if failures:
        print("CORRECTNESS FAILURES: " + ", ".join(failures))
        return 1
    print("correct: nothing lost, no duplicate sends, no ordering violations, no errors")
    return 0


def print_summary(result: dict[str, Any], path: Path) -> None:
    rows = [
        (name, result.get(name))
        for name in (
            *STEP_FIGURES,
            "max_rate_rps",
            "worst_window_p95_ack_ms",
            "first_windows_p95_ack_ms",
            "last_windows_p95_ack_ms",
            "lost",
            "duplicate_sends",
            "ordering_violations",
            "drain_seconds",
            "messages",
            "cpu_ms_per_event",
            "cpu_ratio_to_floor",
            "host_steal_percent",
            "io_stall_percent",
            "web_server",
            "stack",
            "database",
        )
        if name in result
    ]
    if "pg_statements" in result:
        profile = result["pg_statements"]
        rows.append(
            (
                "pg statements per event",
                {k: profile[k] for k in profile if k.endswith("_per_event")},
            )
        )
    if "floor" in result:
        rows.append(("floor p95_ack_ms", result["floor"]["p95_ack_ms"]))
        rows.append(("floor cpu_ms_per_event", result["floor"]["cpu_ms_per_event"]))
        rows.append(("floor host_steal_percent", result["floor"].get("host_steal_percent")))
        rows.append(("floor io_stall_percent", result["floor"].get("io_stall_percent")))
        rows.append(("floor drift (after / before)", result["floor"].get("drift")))
    machine = result["machine"]
    rows.append(("machine", f"{machine['cores']} cores, {machine['cpu']}"))
    rows.append(("load average at start", machine["loadavg_at_start"]))
    print_table(f"comcenter replay ({result['mode']}): {path.relative_to(harness.ROOT)}", rows)
    for step in result.get("steps", []):
        print(
            f"  {step['target_rate_rps']:>7}/s  P95 {step['p95_ack_ms']} ms  "
            f"P99 {step['p99_ack_ms']} ms  errors {step['errors']}"
        )
    for n, window in enumerate(result.get("windows", []), 1):
        print(f"  window {n:>3}: P95 {window['p95_ack_ms']} ms  errors {window['errors']}")


if __name__ == "__main__":
    sys.exit(main())
