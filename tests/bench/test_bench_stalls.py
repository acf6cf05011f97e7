"""The stall report (bench/stalls.py): the slow seconds of a trace beside what the machine
was doing in them, and a real sampler's lines."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from bench import stalls


def test_each_process_kind_is_named_by_its_command_line() -> None:
    assert stalls.kind_of("/v/bin/python -m granian --interface rsgi x") == "web"
    assert stalls.kind_of("python manage.py qcluster") == "workers"
    assert stalls.kind_of("postgres: autovacuum worker comcenter_bench") == "autovacuum"
    assert stalls.kind_of("postgres: postgres comcenter_bench 127.0.0.1(5) idle") == "pg_backend"
    assert stalls.kind_of("postgres: walwriter ") == "pg_other"
    assert stalls.kind_of("bash -c sleep 1") == "other"


def test_the_report_keeps_the_slow_seconds_with_their_averaged_samples(tmp_path: Path) -> None:
    trace = tmp_path / "trace.txt"
    # Second 100: fast; second 101: 20 answers, one of them slow enough to lift the P95.
    lines = [f"100.{i:03d} 5.0 replay\n" for i in range(20)]
    lines += [f"101.{i:03d} {300.0 if i >= 18 else 6.0} replay\n" for i in range(20)]
    lines += ["101.500 900.0 warm-up\n"]  # another step: left out
    trace.write_text("".join(lines))
    samples = tmp_path / "samples.txt"
    samples.write_text(
        "100.1 web=700 steal=0 io_stall=0\n"
        "101.1 web=100 pg_backend=40 steal=10 io_stall=600\n"
        "101.3 web=300 pg_backend=60 steal=30 io_stall=200\n"
    )
    out = stalls.report(str(trace), str(samples), over=25.0, step="replay")
    assert out[0].split()[:3] == ["second", "P95", "ms"]
    body = out[1:-1]
    assert len(body) == 1
    fields = body[0].replace("|", " ").split()
    assert fields[:3] == ["101", "300.0", "20"]
    figures = dict(zip(("*", *stalls.COLUMNS, "steal", "io_stall"), fields[2:], strict=True))
    assert figures["web"] == "200"
    assert figures["pg_backend"] == "50"
    assert figures["steal"] == "20"
    assert figures["io_stall"] == "400"
    # Two slow answers of 40 are within the slowest 5 %: the whole P95 is a fast one.
    assert out[-1] == "2 seconds, P95 of all answers 6.0 ms"


def test_the_sampler_writes_a_line_per_interval_with_the_hosts_figures(tmp_path: Path) -> None:
    out = tmp_path / "samples.txt"
    sampler = subprocess.Popen([sys.executable, "-m", "bench.stalls", "sample", str(out)])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(_lines(out)) < 3:
            time.sleep(0.1)
    finally:
        sampler.send_signal(signal.SIGINT)
        assert sampler.wait(timeout=10) == 0
    lines = _lines(out)
    assert len(lines) >= 3
    for line in lines:
        at, *pairs = line.split()
        assert abs(float(at) - time.time()) < 60
        names = {pair.split("=")[0] for pair in pairs}
        assert {"steal", "io_stall"} <= names


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []
