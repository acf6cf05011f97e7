"""A fresh directory for the files that every process of a node writes on each request
(prometheus_client's multiprocess files, the ack-latency rings), in memory where it can be.

Those files are memory-mapped or rewritten hundreds of times a second. On a disk filesystem
the kernel writes their dirty pages back every few seconds, and a write to a page that was
just written back first updates the file's times through the filesystem's journal (ext4's
`page_mkwrite`), so a request can wait behind a journal commit that PostgreSQL's WAL flushes
forced on the same disk. On tmpfs (/dev/shm, present on every Linux) there is no writeback
and no journal, and the files go at reboot, which a fresh-per-start directory wants anyway.
gunicorn's documentation gives the same advice for its worker heartbeat files. (Two paired
replays on a 2-vCPU VM showed no difference above that host's own I/O stalls: this removes
a source of stalls, it is not a measured saving.)
"""

from __future__ import annotations

import os
import tempfile

# A fixed system path, not a guessable file name: mkdtemp makes a private directory in it.
SHARED_MEMORY = "/dev/shm"  # noqa: S108


def shared_memory() -> str | None:
    """SHARED_MEMORY when it is a directory this process can create files in, else None."""
    return SHARED_MEMORY if os.access(SHARED_MEMORY, os.W_OK | os.X_OK) else None


def fresh_runtime_dir(prefix: str) -> str:
    """A new empty directory under /dev/shm when it is usable (`shared_memory`), else under the
    system's temporary directory (TMPDIR)."""
    return tempfile.mkdtemp(prefix=prefix, dir=shared_memory())
