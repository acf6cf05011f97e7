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
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds of it and its reaped children)."""
    table: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            # The command name (field 2) may hold spaces and parentheses: split after it.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
        table[int(entry.name)] = (int(fields[1]), ticks / _TICK)
    return table


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


@dataclass
class Sample:
    seconds: dict[str, float]


def sample(components: dict[str, int]) -> Sample:
    """CPU seconds so far of each component, named by the pid at the root of its tree."""
    table = _processes()
    return Sample({name: _tree_seconds(table, pid) for name, pid in components.items()})


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
