"""CPU time of the system under test by component, read from /proc during one window.

A component is a process and all its descendants (the web server's master and workers, the
django-q2 cluster, the postmaster and its backends, redis-server). Its CPU time is the sum of
`utime + stime + cutime + cstime` over the live processes of its tree: a child that exits is
reaped by its parent, and its time moves into the parent's `cutime`/`cstime`, so the sum stays
continuous whether a process lives through the window, starts in it or ends in it (a
PostgreSQL backend or autovacuum worker, a recycled web worker).

The figures are CPU, not wall-clock time: they do not grow because other work on the machine
delays ours (only cache and frequency effects do), which is what makes runs on a loaded
machine comparable with each other and with the floor measured beside them.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def proc_stats() -> dict[Path, list[str]]:
    """/proc/<pid> -> the fields of its `stat` after the command name, for every live process
    (field 4, the parent pid, is at index 1; utime, stime, cutime, cstime at 11-14)."""
    stats: dict[Path, list[str]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            # The command name (field 2) may hold spaces and parentheses: split after it.
            stats[entry] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
    return stats


def _processes() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds of it and its reaped children)."""
    return {
        int(entry.name): (int(fields[1]), sum(int(v) for v in fields[11:15]) / _TICK)
        for entry, fields in proc_stats().items()
    }


def _tree_seconds(table: dict[int, tuple[int, float]], root: int) -> float:
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        if pid in table:
            total += table[pid][1]
        stack.extend(children.get(pid, ()))
    return total


def _host_ticks() -> tuple[int, int]:
    """(steal, all) ticks of the machine's CPUs so far, from /proc/stat's `cpu` line."""
    try:
        fields = [
            int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        ]
    except (OSError, ValueError):
        return 0, 0
    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def _io_stalled_us() -> int:
    """Microseconds so far in which every runnable task of the machine waited on I/O
    (/proc/pressure/io, `full`; 0 where the kernel has no pressure stall information)."""
    try:
        for line in Path("/proc/pressure/io").read_text().splitlines():
            if line.startswith("full"):
                return int(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


@dataclass
class Sample:
    seconds: dict[str, float]
    host: tuple[int, int] = (0, 0)
    io_stalled_us: int = 0
    at: float = 0.0


def sample(components: dict[str, int]) -> Sample:
    """CPU seconds so far of each component, named by the pid at the root of its tree."""
    table = _processes()
    return Sample(
        {name: _tree_seconds(table, pid) for name, pid in components.items()},
        _host_ticks(),
        _io_stalled_us(),
        time.monotonic(),
    )


def steal_percent(start: Sample, end: Sample) -> float | None:
    """The share of the machine's CPU time that its hypervisor gave to other guests between
    two samples. On a shared host it is what makes one run's latency differ from the next on
    an idle machine: a stalled vCPU delays every request queued on it without adding to any
    component's CPU time."""
    steal, ticks = end.host[0] - start.host[0], end.host[1] - start.host[1]
    return round(100.0 * steal / ticks, 2) if ticks > 0 else None


def io_stall_percent(start: Sample, end: Sample) -> float | None:
    """The share of the wall-clock time between two samples in which everything runnable on
    the machine waited for the disk (a commit's WAL flush among it): a virtual disk's
    hiccups show here, and every acknowledgement waiting on a commit waits with them."""
    elapsed_us = (end.at - start.at) * 1e6
    if elapsed_us <= 0 or not Path("/proc/pressure/io").exists():
        return None
    return round(100.0 * (end.io_stalled_us - start.io_stalled_us) / elapsed_us, 2)


def per_event_ms(start: Sample, end: Sample, *, events: int) -> dict[str, float | None]:
    """CPU ms per event of each component between two samples, and their `total`."""
    if events <= 0:
        return dict.fromkeys([*start.seconds, "total"])
    spent = {name: max(0.0, end.seconds[name] - start.seconds[name]) for name in start.seconds}
    result: dict[str, float | None] = {
        name: round(seconds * 1000 / events, 3) for name, seconds in spent.items()
    }
    result["total"] = round(sum(spent.values()) * 1000 / events, 3)
    return result


def cpu_model() -> str:
    """The processor's model name (`lscpu`'s "Model name"), as /proc/cpuinfo gives it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
