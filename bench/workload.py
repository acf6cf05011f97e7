"""The replay's request mix, generated deterministically from a seed.

Per issue 5: mostly new events, 5 % exact duplicates (the same bytes again, expected 200 with
the original's id), 1 % same key with a different payload (expected 409), spread over 1,000
ordering keys whose sequences count up from 1; about 2 % of the keys' events are sent just
after their successor (sequence k+1 a few requests before k), so the dispatcher's per-key
ordering is exercised without hitting the gap timeout.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

DUPLICATE_SHARE = 0.05
CONFLICT_SHARE = 0.01
SWAP_SHARE = 0.02
KEYS = 1000
# A duplicate or a conflict re-uses a key sent at least this many requests earlier, so it is
# a replay of a committed event, not a race with it (races are decided by the database and
# judged correctly anyway, see bench/checks.py).
MIN_REPLAY_DISTANCE = 50
EVENT_TYPES = ("deadline_soon", "new_match")


@dataclass(frozen=True)
class Request:
    """One request of the replay. `kind` is what the generator intended: new, duplicate or
    conflict; the verdict is computed per idempotency key from the answers."""

    index: int
    kind: str
    idempotency_key: str
    ordering_key: str
    sequence: int
    body: bytes


def _body(
    *, run: str, key: str, ordering_key: str, sequence: int, event_type: str, variant: int
) -> bytes:
    number = int(ordering_key.rsplit("k", 1)[1])
    payload = {
        "event_type": event_type,
        "idempotency_key": key,
        "ordering_key": ordering_key,
        "sequence": sequence,
        "recipient": {
            "id": ordering_key,
            "email": f"student{number}@example.org",
            "phone": f"+1202555{number % 10000:04d}",
            "locale": "en",
        },
        "data": {
            "scholarship": f"Bench Fund {variant}",
            "deadline": "2026-12-01",
            "run": run,
        },
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def generate(*, run: str, total: int, seed: int = 5) -> list[Request]:
    """`total` requests in send order."""
    rng = random.Random(seed)
    duplicates = round(total * DUPLICATE_SHARE)
    conflicts = round(total * CONFLICT_SHARE)
    new_count = total - duplicates - conflicts
    keys = [f"{run}-k{n}" for n in range(min(KEYS, new_count))]

    # New events: keys picked at random, each key's sequence counting up in send order.
    next_sequence = dict.fromkeys(keys, 1)
    events: list[tuple[str, int]] = []
    for _ in range(new_count):
        ordering_key = rng.choice(keys)
        events.append((ordering_key, next_sequence[ordering_key]))
        next_sequence[ordering_key] += 1

    # Out of order: move event (key, k) to just after (key, k+1).
    position = {event: i for i, event in enumerate(events)}
    for ordering_key, sequence in list(events):
        successor = (ordering_key, sequence + 1)
        if successor in position and rng.random() < SWAP_SHARE:
            events.remove((ordering_key, sequence))
            target = events.index(successor) + 1 + rng.randrange(3)
            events.insert(min(target, len(events)), (ordering_key, sequence))
            position = {event: i for i, event in enumerate(events)}

    requests: list[Request] = []
    for ordering_key, sequence in events:
        key = f"{ordering_key}-s{sequence}"
        event_type = EVENT_TYPES[sequence % 2]
        body = _body(
            run=run,
            key=key,
            ordering_key=ordering_key,
            sequence=sequence,
            event_type=event_type,
            variant=0,
        )
        requests.append(Request(0, "new", key, ordering_key, sequence, body))

    # Replays slotted in at random points after their original.
    for kind, count in (("duplicate", duplicates), ("conflict", conflicts)):
        for _ in range(count):
            slot = rng.randrange(MIN_REPLAY_DISTANCE, len(requests) + 1)
            original = requests[rng.randrange(0, slot - MIN_REPLAY_DISTANCE + 1)]
            while original.kind != "new":
                original = requests[rng.randrange(0, slot - MIN_REPLAY_DISTANCE + 1)]
            body = original.body
            if kind == "conflict":
                body = _body(
                    run=run,
                    key=original.idempotency_key,
                    ordering_key=original.ordering_key,
                    sequence=original.sequence,
                    event_type=EVENT_TYPES[original.sequence % 2],
                    variant=1 + rng.randrange(1000),
                )
            requests.insert(
                slot,
                Request(
                    0,
                    kind,
                    original.idempotency_key,
                    original.ordering_key,
                    original.sequence,
                    body,
                ),
            )
    return [
        Request(i, r.kind, r.idempotency_key, r.ordering_key, r.sequence, r.body)
        for i, r in enumerate(requests)
    ]
