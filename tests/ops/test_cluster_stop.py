"""Stopping the worker cluster (make run, the benchmark) leaves no process of it behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from comcenter.run import cluster_stop

# A main process that shrugs off SIGTERM (as django-q2's does while it waits for a busy worker)
# with a child that would run on after it (as a worker looping in the delivery ticker would).
STUBBORN_CLUSTER = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: None)
child = os.fork()
if child == 0:
    signal.signal(signal.SIGTERM, lambda *_: None)
    while True:
        time.sleep(1)
print(child, flush=True)
while True:
    time.sleep(1)
"""

# A main process that exits on SIGTERM while its worker child would not.
ORPHANING_CLUSTER = STUBBORN_CLUSTER.replace(
    "signal.signal(signal.SIGTERM, lambda *_: None)\nchild", "child"
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has ended, only its parent has not reaped it yet.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def _start(script: str) -> tuple[subprocess.Popen, int]:
    cluster = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    child = int(cluster.stdout.readline())
    return cluster, child


def _gone_soon(pid: int) -> bool:
    for _ in range(50):
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_a_main_process_that_ignores_sigterm_is_killed_with_its_workers():
    cluster, child = _start(STUBBORN_CLUSTER)

    cluster_stop(cluster, grace=0.5)

    assert cluster.returncode is not None
    assert _gone_soon(child)


def test_workers_do_not_outlive_a_main_process_that_exits():
    cluster, child = _start(ORPHANING_CLUSTER)

    cluster_stop(cluster, grace=0.5)

    assert cluster.returncode is not None
    assert _gone_soon(child)
