"""Idempotency per caller and key: replays, conflicts, and concurrent duplicates."""

from __future__ import annotations

import json
import threading

import pytest
from django.db import connection

from events.models import Event


def test_it_answers_a_replay_with_200_and_the_original_id(alice, make_event):
    first = alice.post_event(make_event())
    second = alice.post_event(make_event())
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["duplicate"] is True
    assert Event.objects.count() == 1


def test_it_treats_reordered_keys_as_the_same_payload(alice, make_event):
    body = make_event()
    alice.post_event(body)
    reordered = json.dumps(dict(reversed(list(body.items()))))
    assert alice.post_event(reordered).status_code == 200


def test_it_treats_a_header_key_like_a_body_key(alice, make_event):
    alice.post_event(make_event(key="k-1"))
    body = make_event()
    del body["idempotency_key"]
    response = alice.post_event(body, HTTP_IDEMPOTENCY_KEY="k-1")
    assert response.status_code == 200


def test_it_answers_409_for_the_same_key_with_another_payload(alice, make_event):
    first = alice.post_event(make_event())
    response = alice.post_event(make_event(data={"scholarship": "Other"}))
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "idempotency_conflict"
    assert body["detail"]["event_id"] == first.json()["id"]
    assert Event.objects.count() == 1


def test_it_scopes_keys_to_the_caller(alice, bob, make_event):
    assert alice.post_event(make_event()).status_code == 202
    assert bob.post_event(make_event(data={"other": 1})).status_code == 202
    assert Event.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_it_lets_the_database_decide_between_concurrent_duplicates(alice, make_event):
    """16 parallel posts of one key: exactly one 202 and one event; the rest are duplicates."""
    body = json.dumps(make_event(key="race-1"))
    barrier = threading.Barrier(16)
    results: list[int] = []
    ids: set[str] = set()
    lock = threading.Lock()

    def post() -> None:
        try:
            barrier.wait()
            response = alice.post_event(body)
            with lock:
                results.append(response.status_code)
                ids.add(response.json()["id"])
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200] * 15 + [202]
    assert len(ids) == 1
    assert Event.objects.filter(idempotency_key="race-1").count() == 1


@pytest.mark.django_db(transaction=True)
def test_it_answers_409_to_racing_conflicting_payloads(alice, make_event):
    barrier = threading.Barrier(8)
    results: list[int] = []
    lock = threading.Lock()

    def post(n: int) -> None:
        try:
            barrier.wait()
            response = alice.post_event(make_event(key="race-2", data={"n": n}))
            with lock:
                results.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [202] + [409] * 7
    assert Event.objects.filter(idempotency_key="race-2").count() == 1
