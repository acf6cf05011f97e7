"""The django-q2 broker as the outbox wake-up sees it: emptied around each test, and what a
test's wake-ups queued on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django_q.brokers import Broker, get_broker
from django_q.signing import SignedPackage


@pytest.fixture
def broker() -> Iterator[Broker]:
    broker = get_broker()
    broker.purge_queue()
    yield broker
    broker.purge_queue()


def queued_funcs(broker: Broker) -> list[str]:
    """The functions of the tasks queued on `broker`, taken off it (and acknowledged)."""
    funcs = []
    while (task := broker.dequeue()) is not None:
        for ack_id, payload in task:
            funcs.append(SignedPackage.loads(payload)["func"])
            broker.acknowledge(ack_id)
    return funcs
