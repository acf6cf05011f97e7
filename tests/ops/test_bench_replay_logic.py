"""The replay benchmark's own logic: the request mix it promises, and how it judges answers
(a wrong verdict there would hide a lost or duplicated event)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from bench.checks import Answer, count_ordering_violations, judge_answers
from bench.workload import generate


def test_it_generates_the_promised_mix() -> None:
    requests = generate(run="t", total=10_000)
    kinds = Counter(r.kind for r in requests)
    assert len(requests) == 10_000
    assert kinds["duplicate"] == 500
    assert kinds["conflict"] == 100
    first = {}
    for request in requests:
        if request.kind == "new":
            first[request.idempotency_key] = request
        else:
            original = first[request.idempotency_key]  # always after its original
            same = request.body == original.body
            assert same is (request.kind == "duplicate")
    assert len({r.ordering_key for r in requests}) == 1000


def test_it_numbers_each_key_from_one_and_swaps_only_neighbours() -> None:
    requests = [r for r in generate(run="t", total=10_000) if r.kind == "new"]
    positions: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for position, request in enumerate(requests):
        body = json.loads(request.body)
        assert body["sequence"] == request.sequence
        positions[request.ordering_key].append((request.sequence, position))
    swapped = 0
    for sent in positions.values():
        assert sorted(s for s, _ in sent) == list(range(1, len(sent) + 1))
        for (seq_a, pos_a), (seq_b, pos_b) in pairwise(sent):
            if seq_b < seq_a:
                swapped += 1
                # The late one follows within a few requests (a key recurs every ~1,000).
                assert pos_b - pos_a <= 10
    assert swapped > 0


def _answers(*statuses_and_ids: tuple[int, str]) -> list[Answer]:
    return [Answer(status, event_id, 1.0) for status, event_id in statuses_and_ids]


def test_it_accepts_any_winner_of_a_race() -> None:
    requests = generate(run="t", total=200)
    original = next(r for r in requests if r.kind == "new")
    pair = [original, original]  # the same bytes twice, racing: the second got in first
    verdict = judge_answers(pair, _answers((200, "e1"), (202, "e1")))
    assert verdict.idempotency_violations == 0
    assert verdict.accepted == 2


def test_it_flags_a_second_acceptance_and_a_wrong_duplicate_id() -> None:
    requests = generate(run="t", total=200)
    original = next(r for r in requests if r.kind == "new")
    twice_new = judge_answers([original, original], _answers((202, "e1"), (202, "e2")))
    assert twice_new.idempotency_violations == 2
    other_id = judge_answers([original, original], _answers((202, "e1"), (200, "e2")))
    assert other_id.idempotency_violations == 1


def test_it_counts_timeouts_and_5xx_as_errors_not_as_violations() -> None:
    requests = generate(run="t", total=200)
    original = next(r for r in requests if r.kind == "new")
    verdict = judge_answers([original, original], _answers((0, ""), (500, "")))
    assert verdict.errors == 2
    assert verdict.idempotency_violations == 0


def _at(seconds: float) -> datetime:
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)


GAP = timedelta(seconds=10)


def test_ordering_is_judged_per_key_and_channel() -> None:
    # The key's email went 1, 2; its SMS lane 2 before 1 within the gap wait: one violation
    # in the SMS lane, none for the email lane nor across the two channels.
    rows = [
        ("k", "email", 1, _at(0)),
        ("k", "email", 2, _at(1)),
        ("k", "sms", 2, _at(1)),
        ("k", "sms", 1, _at(0)),
    ]
    assert count_ordering_violations(rows, gap_wait=GAP) == 1
    in_order_per_lane = [
        ("k", "email", 2, _at(1)),  # the email of 2 went before the SMS of 1: allowed
        ("k", "sms", 1, _at(0)),
        ("k", "sms", 2, _at(1)),
    ]
    assert count_ordering_violations(in_order_per_lane, gap_wait=GAP) == 0


def test_an_overtaken_message_that_arrived_after_the_gap_wait_is_no_violation() -> None:
    late = [("k", "sms", 2, _at(0)), ("k", "sms", 1, _at(10.5))]
    assert count_ordering_violations(late, gap_wait=GAP) == 0
    in_time = [("k", "sms", 2, _at(0)), ("k", "sms", 1, _at(9.5))]
    assert count_ordering_violations(in_time, gap_wait=GAP) == 1
    other_key = [("a", "sms", 2, _at(0)), ("b", "sms", 1, _at(1))]
    assert count_ordering_violations(other_key, gap_wait=GAP) == 0
