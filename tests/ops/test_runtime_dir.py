"""Where the per-node files that every request writes live (comcenter/lib/runtime_dir.py):
in memory when /dev/shm can take them, else the system's temporary directory."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from comcenter.lib import runtime_dir


def test_it_makes_a_new_private_directory_in_shared_memory() -> None:
    if not os.access(runtime_dir.SHARED_MEMORY, os.W_OK | os.X_OK):
        pytest.fail("this suite runs on Linux, where /dev/shm is writable")
    first = Path(runtime_dir.fresh_runtime_dir("cc-test-"))
    second = Path(runtime_dir.fresh_runtime_dir("cc-test-"))
    try:
        assert first.parent == Path(runtime_dir.SHARED_MEMORY)
        assert first != second
        assert first.name.startswith("cc-test-")
        assert list(first.iterdir()) == []
        assert first.stat().st_mode & 0o777 == 0o700
    finally:
        first.rmdir()
        second.rmdir()


def test_without_shared_memory_it_falls_back_to_the_temporary_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(runtime_dir, "SHARED_MEMORY", str(tmp_path / "absent"))
    made = Path(runtime_dir.fresh_runtime_dir("cc-test-"))
    try:
        assert made.parent == Path(tempfile.gettempdir())
    finally:
        made.rmdir()
