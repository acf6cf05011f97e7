"""Per-key ordering with several worker processes against the same database (SQLite or
PostgreSQL): sequences posted in reverse come out in sequence order, each message once."""

from __future__ import annotations

import pytest

from delivery.models import Message
from tests.delivery.conftest import set_flag, wait_until

pytestmark = pytest.mark.slow

KEYS = 6
SEQUENCES = 5


def test_several_workers_keep_every_key_in_sequence_order(
    workers, routes, accept, smtp_server, sms_gateway
):
    set_flag("DISABLE_SEND", False)
    set_flag("RATE_LIMIT_ENABLED", False)
    for sequence in range(SEQUENCES, 0, -1):
        for key in range(KEYS):
            accept(
                sequence=sequence,
                ordering_key=f"key-{key}",
                recipient={
                    "id": f"student-{key}",
                    "email": f"student-{key}@example.org",
                    "phone": f"+1202555{key:04d}",
                },
            )

    workers.start(3, EMAIL_URL=smtp_server.email_url, DISPATCH_BATCH_SIZE="4", **sms_gateway.env())
    wait_until(lambda: Message.objects.filter(state="sent").count() == 2 * KEYS * SEQUENCES)

    assert len(smtp_server.messages) == KEYS * SEQUENCES
    assert len(sms_gateway.sends) == KEYS * SEQUENCES
    for key in range(KEYS):
        emails = smtp_server.messages_to(f"student-{key}@example.org")
        assert [m.message["Subject"].split(":")[0] for m in emails] == [
            f"Seq {n}" for n in range(1, SEQUENCES + 1)
        ]
        texts = [r.form["Body"] for r in sms_gateway.sends if r.form["To"] == f"+1202555{key:04d}"]
        assert [t.split(":")[0] for t in texts] == [f"Seq {n}" for n in range(1, SEQUENCES + 1)]
        # Per channel (each has its lane; channels never wait for each other): never a
        # later sequence dispatched before an earlier one.
        for channel in ("email", "sms"):
            lane = Message.objects.filter(ordering_key=f"key-{key}", channel=channel)
            sequences = [m.sequence for m in lane.order_by("dispatched_at", "id")]
            assert sequences == sorted(sequences)
