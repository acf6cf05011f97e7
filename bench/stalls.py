"""Which seconds of a replay were slow, and what the machine was doing in them.

    .venv/bin/python -m bench.stalls sample /tmp/samples.txt &      # until killed
    BENCH_TRACE=/tmp/trace.txt make bench                          # each answer's time, latency
    kill %1
    .venv/bin/python -m bench.stalls report /tmp/trace.txt /tmp/samples.txt

`sample` writes, five times a second, the CPU of each kind of process on the machine (web
server, django-q2 cluster, PostgreSQL backends, autovacuum, PostgreSQL's own processes, the
load generator, Redis, the rest) and the host's steal and I/O stall (bench/cpu.py's
readings), each in thousandths of a core (or of the wall clock, for the stall) over the
interval. `report` groups the trace's answers by the second they arrived in and prints, for
the seconds whose P95 is above `--over` ms, that P95, the answers and the sampled figures.

A slow second with little CPU in use and a high I/O stall or steal is the host's; one with
the cores full is a queue of our own.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import sys
import time
from pathlib import Path

from bench import cpu
from bench.loadgen import nearest_rank

_TICK = os.sysconf("SC_CLK_TCK")
_CPUS = os.cpu_count() or 1
INTERVAL = 0.2
# The first match of a process's command line names its kind.
KINDS = (
    ("granian", "web"),
    ("gunicorn", "web"),
    ("qcluster", "workers"),
    ("postgres: autovacuum", "autovacuum"),
    ("postgres: postgres", "pg_backend"),
    ("postgres:", "pg_other"),
    ("bench.replay", "loadgen"),
    ("redis-server", "redis"),
)
COLUMNS = ("web", "workers", "pg_backend", "autovacuum", "pg_other", "loadgen", "redis", "other")


def kind_of(command_line: str) -> str:
    for needle, kind in KINDS:
        if needle in command_line:
            return kind
    return "other"


def _ticks_by_process() -> dict[tuple[str, int], int]:
    """(kind, pid) -> the process's own utime + stime ticks (not its reaped children's: a
    child's ticks were counted while it lived, and adding them again at its exit would count
    them twice)."""
    table: dict[tuple[str, int], int] = {}
    for entry, fields in cpu.proc_stats().items():
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        table[(kind_of(command), int(entry.name))] = int(fields[11]) + int(fields[12])
    return table


def sample(path: str) -> None:
    """Append one line per INTERVAL to `path` until interrupted."""
    previous, host = _ticks_by_process(), cpu.sample({})
    with open(path, "a") as out:
        while True:
            time.sleep(INTERVAL)
            current, now_host = _ticks_by_process(), cpu.sample({})
            elapsed = now_host.at - host.at
            used: collections.Counter[str] = collections.Counter()
            for key, ticks in current.items():
                used[key[0]] += ticks - previous.get(key, ticks)
            figures = {kind: round(t * 1000 / _TICK / elapsed) for kind, t in used.items() if t}
            # Percent of all the machine's CPUs -> thousandths of one core; percent of the
            # wall clock -> thousandths of it.
            figures["steal"] = round((cpu.steal_percent(host, now_host) or 0.0) * 10 * _CPUS)
            figures["io_stall"] = round((cpu.io_stall_percent(host, now_host) or 0.0) * 10)
            out.write(f"{time.time():.3f} " + " ".join(f"{k}={v}" for k, v in figures.items()))
            out.write("\n")
            out.flush()
            previous, host = current, now_host


def report(trace: str, samples: str, *, over: float, step: str) -> list[str]:
    """The lines of the slow seconds' table (see the module's docstring)."""
    latencies: dict[int, list[float]] = collections.defaultdict(list)
    for line in Path(trace).read_text().splitlines():
        at, latency, label = line.split(None, 2)
        if label.startswith(step):
            latencies[int(float(at))].append(float(latency))
    sums: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    counts: collections.Counter[int] = collections.Counter()
    for line in Path(samples).read_text().splitlines():
        at, *pairs = line.split()
        second = int(float(at))
        counts[second] += 1
        for pair in pairs:
            name, _, value = pair.partition("=")
            sums[second][name] += int(value)
    columns = (*COLUMNS, "steal", "io_stall")
    lines = ["second  P95 ms  answers | " + " ".join(f"{c:>10}" for c in columns)]
    everything = [v for values in latencies.values() for v in values]
    for second in sorted(latencies):
        values = latencies[second]
        p95 = nearest_rank(values, 0.95) or 0.0
        if p95 <= over:
            continue
        n = max(1, counts[second])
        row = " ".join(f"{sums[second][c] // n:>10}" for c in columns)
        lines.append(f"{second % 10_000:>6} {p95:7.1f} {len(values):8d} | {row}")
    if everything:
        p95_all = nearest_rank(everything, 0.95) or 0.0
        lines.append(f"{len(latencies)} seconds, P95 of all answers {p95_all:.1f} ms")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sampling = commands.add_parser("sample")
    sampling.add_argument("samples")
    reporting = commands.add_parser("report")
    reporting.add_argument("trace")
    reporting.add_argument("samples")
    reporting.add_argument("--over", type=float, default=25.0, help="P95 threshold, ms")
    reporting.add_argument("--step", default="replay", help="the trace label to keep")
    args = parser.parse_args(argv)
    if args.command == "sample":
        with contextlib.suppress(KeyboardInterrupt):
            sample(args.samples)
        return 0
    print("\n".join(report(args.trace, args.samples, over=args.over, step=args.step)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
