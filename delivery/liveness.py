"""Worker liveness: how a killed worker's claims come back in seconds instead of at the end
of their lease, without taking work from a worker that is merely slow.

Each dispatch run (`dispatch_due`) that claims something holds a liveness record, a
`WorkerLease` row named `worker:<random>`, valid until `now() + WORKER_LIVENESS_SECONDS` by the
database's clock. The record is created in the transaction of the run's first claim (so no
claim is ever visible without it) and every claim stores its name in `Message.claimed_by`.
While the run lives it renews the record: the dispatching thread before each send once a
quarter of the interval has passed, and a heartbeat thread during a send that takes longer.
A renewal is a conditional UPDATE that matches only a record still valid: a record that ran
out (or was purged) is never revived, so a worker that was paused past its liveness finds
its liveness lost at its next send and puts the rest of its batch back in line (fenced writes:
nothing if the claims were recovered meanwhile).

`messages_recover_expired_leases` (delivery/claims.py) recovers a dispatching message when
its lease ran out or its `claimed_by` record is no longer valid, fenced on the lease token
as before. Times are compared in the database only (`Now()`), so worker clocks may be off by
any amount; the local monotonic clock only decides when to renew."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from datetime import timedelta
from types import TracebackType

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models.functions import Now

from delivery.models import WorkerLease

log = logging.getLogger(__name__)

PREFIX = "worker:"


class Liveness:
    """The liveness record of one dispatch run; a context manager that deletes the record
    (and stops the heartbeat) when the run ends."""

    def __init__(self, *, seconds: float | None = None) -> None:
        self.seconds = seconds or settings.WORKER_LIVENESS_SECONDS
        self.name = f"{PREFIX}{uuid.uuid4().hex[:24]}"
        self.holder = f"{socket.gethostname()}:{os.getpid()}"[:100]
        self.created = False
        self.lost = False
        # time.monotonic() when the last successful renewal started: the record is valid
        # until at least that + seconds (the database set it after that instant).
        self._renewed = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Liveness:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            # A heartbeat blocked on the database must not hold the worker; it is a daemon.
            self._thread.join(timeout=1.0)
        if self.created:
            try:
                WorkerLease.objects.filter(name=self.name).delete()
            except DatabaseError:
                # The record runs out by itself; the ticker purges it.
                log.warning("could not delete a worker liveness record", extra={"cause": "db"})

    def ensure(self) -> None:
        """Create the record; call inside the claim's transaction (before its first claim
        commits, so no claim names a record that is not there)."""
        if self.created:
            return
        assert connection.in_atomic_block, "create the liveness record with the claim"
        started = time.monotonic()
        WorkerLease.objects.create(
            name=self.name, holder=self.holder, until=Now() + timedelta(seconds=self.seconds)
        )
        self.created = True
        self._renewed = started
        # Start the heartbeat only once the record is committed.
        transaction.on_commit(self._start)

    def alive(self) -> bool:
        """Whether this worker may start a send: renews the record when a quarter of the
        interval has passed since the last renewal. False for good once the record ran out."""
        if self.lost:
            return False
        if not self.created or time.monotonic() - self._renewed < self.seconds / 4:
            return True
        if not self._renew():
            self.lost = True
            log.warning("worker liveness lost; the rest of the batch goes back in line")
        return not self.lost

    def _renew(self) -> bool:
        started = time.monotonic()
        renewed = WorkerLease.objects.filter(name=self.name, until__gte=Now()).update(
            until=Now() + timedelta(seconds=self.seconds)
        )
        if renewed:
            self._renewed = max(self._renewed, started)
        return bool(renewed)

    def _start(self) -> None:
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(
                target=self._beat, name=f"liveness-{self.name}", daemon=True
            )
            self._thread.start()

    def _beat(self) -> None:
        """The heartbeat thread: renews on its own connection while the dispatching thread
        is busy in a send (it renews itself between sends). It never declares the liveness
        lost: a record it cannot see or renew is the dispatching thread's to judge at its
        next send."""
        try:
            while not self._stop.wait(self.seconds / 8):
                if time.monotonic() - self._renewed < self.seconds / 4:
                    continue
                # On failure the next beat tries again; the record may run out meanwhile.
                with contextlib.suppress(DatabaseError):
                    self._renew()
        finally:
            connection.close()


def liveness_purge() -> int:
    """Delete liveness records that ran out (their claims are recoverable either way: a
    claim naming a missing record counts as one whose worker is gone)."""
    deleted, _ = WorkerLease.objects.filter(name__startswith=PREFIX, until__lt=Now()).delete()
    return deleted
