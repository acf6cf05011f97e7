"""The benchmark's CPU accounting (bench/cpu.py) on real processes: a process tree's time
includes children that ran and exited inside the window, and is divided per event."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from bench import cpu

# A parent that starts a child burning ~0.4 s of CPU, waits for it (reaps it), then idles
# until its stdin closes: the child's time must show in the parent's tree after it is gone.
_PARENT = textwrap.dedent(
    """
    import subprocess, sys
    subprocess.run([sys.executable, "-c",
        "import time\\nend = time.process_time() + 0.4\\nwhile time.process_time() < end: pass"])
    print("reaped", flush=True)
    sys.stdin.read()
    """
)


def test_it_counts_a_child_that_ran_and_exited_inside_the_window() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        before = cpu.sample({"tree": parent.pid})
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "reaped"
        after = cpu.sample({"tree": parent.pid})
    finally:
        parent.communicate("", timeout=30)
    assert after.seconds["tree"] - before.seconds["tree"] >= 0.3


def test_it_divides_each_components_time_by_the_events_and_adds_a_total() -> None:
    start = cpu.Sample({"web": 10.0, "database": 2.0})
    end = cpu.Sample({"web": 12.5, "database": 2.5})
    assert cpu.per_event_ms(start, end, events=1000) == {
        "web": 2.5,
        "database": 0.5,
        "total": 3.0,
    }
    assert cpu.per_event_ms(start, end, events=0) == {"web": None, "database": None, "total": None}


def test_it_finds_nothing_for_a_process_that_does_not_exist() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert cpu.sample({"gone": gone.pid}).seconds == {"gone": 0.0}


def test_steal_is_the_hosts_share_of_the_window_and_none_without_ticks() -> None:
    start = cpu.Sample({}, host=(100, 10_000))
    end = cpu.Sample({}, host=(130, 11_000))
    assert cpu.steal_percent(start, end) == 3.0
    assert cpu.steal_percent(start, start) is None


def test_a_real_sample_reads_the_machines_ticks() -> None:
    first = cpu.sample({})
    end = time.monotonic() + 0.1
    while time.monotonic() < end:  # at least ten ticks of this CPU pass
        pass
    second = cpu.sample({})
    assert second.host[1] > first.host[1] > 0
    assert 0 <= second.host[0] <= second.host[1]
    steal = cpu.steal_percent(first, second)
    assert steal is not None
    assert 0.0 <= steal <= 100.0


def test_io_stall_is_the_share_of_wall_clock_time_everything_waited_on_the_disk() -> None:
    start = cpu.Sample({}, io_stalled_us=1_000_000, at=100.0)
    end = cpu.Sample({}, io_stalled_us=1_250_000, at=110.0)
    assert cpu.io_stall_percent(start, end) == 2.5
    assert cpu.io_stall_percent(end, end) is None
