"""Named worker leases (delivery/leases.py): one holder at a time, renewed in one statement."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from delivery.leases import worker_lease_release, worker_lease_take
from delivery.models import WorkerLease

pytestmark = pytest.mark.django_db


def test_it_creates_and_takes_a_lease_on_a_new_database():
    assert worker_lease_take(name="tick", holder="alice", seconds=30)

    assert WorkerLease.objects.get(name="tick").holder == "alice"


def test_it_refuses_a_held_lease_to_another_holder():
    assert worker_lease_take(name="tick", holder="alice", seconds=30)

    assert not worker_lease_take(name="tick", holder="bob", seconds=30)
    assert WorkerLease.objects.get(name="tick").holder == "alice"


def test_it_renews_its_own_lease_in_one_statement():
    assert worker_lease_take(name="tick", holder="alice", seconds=30)

    with CaptureQueriesContext(connection) as captured:
        assert worker_lease_take(name="tick", holder="alice", seconds=30)

    assert len(captured) == 1


def test_it_gives_a_released_lease_to_the_next_holder():
    assert worker_lease_take(name="tick", holder="alice", seconds=30)
    worker_lease_release(name="tick", holder="alice")

    assert worker_lease_take(name="tick", holder="bob", seconds=30)
    assert WorkerLease.objects.get(name="tick").holder == "bob"
