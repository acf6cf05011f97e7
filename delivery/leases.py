"""Named worker leases: one holder at a time (the ticker), released or expired."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q
from django.db.models.functions import Now

from delivery.models import WorkerLease


def worker_lease_take(*, name: str, holder: str, seconds: float) -> bool:
    """Take or renew the named lease for `seconds` if it is free, expired or already ours.
    A conditional UPDATE checked by row count: of concurrent takers exactly one matches the
    row (PostgreSQL re-checks the condition after waiting for the row lock). The row is
    created only when the UPDATE matches nothing (a new database, or the lease is held), so
    a pass that takes or renews its lease costs one statement instead of a look-up first."""
    free = Q(until__isnull=True) | Q(until__lt=Now()) | Q(holder=holder)

    def take() -> bool:
        return bool(
            WorkerLease.objects.filter(free, name=name).update(
                holder=holder, until=Now() + timedelta(seconds=seconds)
            )
        )

    if take():
        return True
    WorkerLease.objects.get_or_create(name=name)
    return take()


def worker_lease_release(*, name: str, holder: str) -> None:
    WorkerLease.objects.filter(name=name, holder=holder).update(holder="", until=None)
