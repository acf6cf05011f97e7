"""Receive-and-queue: while no key can be had, tokens that claim our issuer and
audience are let in as auth_pending and nothing of theirs is dispatched; once the JWKS is back
the verifier releases the valid events in receipt order and rejects the rest, audited."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.utils import timezone
from django_q.brokers import get_broker
from django_q.signing import SignedPackage

from audit.models import AuditRecord
from events.models import Event, EventStatus, OutboxState
from events.pending import VERIFIER, pending_verify, receive_and_queue_active
from events.services import event_accept
from identity.jwks import jwks_refresh
from tests.identity.support import ISSUER, Idp, bearer_client, post_event

MakeEvent = Callable[..., dict[str, Any]]


def pending_event(
    idp: Idp, token: str, key: str, *, received_ago: float = 0.0, **extra: Any
) -> Event:
    """An auth_pending event as the intake stores it, received `received_ago` seconds ago."""
    payload = {
        "event_type": "deadline_soon",
        "recipient": {"id": extra.pop("recipient", "student-42"), "email": "a@example.org"},
        "data": {},
        **extra,
    }
    event = event_accept(
        caller=f"idp:{ISSUER}|svc-scholarships",
        payload=payload,
        idempotency_key=key,
        request_id=f"req-{key}",
        auth_pending=True,
        pending_token=token,
    ).event
    if received_ago:
        Event.objects.filter(pk=event.pk).update(
            received_at=timezone.now() - timedelta(seconds=received_ago)
        )
    return event


def test_it_queues_while_the_jwks_is_down_then_verifies_and_rejects(
    idp: Idp, event_types: Any, make_event: MakeEvent
) -> None:
    idp.go_down()
    honest = post_event(idp.token(), make_event("evt-honest"))
    forged = post_event(idp.token(idp.keys.attacker), make_event("evt-forged"))
    for response in (honest, forged):
        assert response.status_code == 202, response.content
        assert response.json()["status"] == "auth_pending"
    held = Event.objects.filter(status=EventStatus.AUTH_PENDING)
    assert set(held.values_list("outbox_state", flat=True)) == {OutboxState.HELD}
    assert receive_and_queue_active() is True
    # Claims that fail without a key are refused even now.
    assert post_event(idp.token(aud="another-api"), make_event("evt-3")).status_code == 401
    expired = idp.token(iat=int(time.time()) - 900, nbf=int(time.time()) - 900, exp=1)
    assert post_event(expired, make_event("evt-4")).status_code == 401
    assert pending_verify() == {"released": 0, "rejected": 0, "waiting": 2}

    idp.publish(idp.keys.rsa_a)
    assert pending_verify() == {"released": 1, "rejected": 1, "waiting": 0}

    released = Event.objects.get(uid=honest.json()["id"])
    assert (released.status, released.outbox_state) == (EventStatus.ACCEPTED, OutboxState.PENDING)
    assert released.pending_token == ""
    rejected = Event.objects.get(uid=forged.json()["id"])
    assert (rejected.status, rejected.outbox_state) == (EventStatus.REJECTED, OutboxState.HELD)
    assert rejected.status_reason.startswith("bad_signature")
    assert rejected.pending_token == ""
    verified_row = AuditRecord.objects.get(kind="event.verified", event_uid=released.uid)
    rejected_row = AuditRecord.objects.get(kind="event.rejected", event_uid=rejected.uid)
    assert verified_row.actor == rejected_row.actor == VERIFIER
    assert rejected_row.data["reason"].startswith("bad_signature")
    assert receive_and_queue_active() is False
    status = bearer_client(idp.token()).get(f"/api/v1/events/{released.uid}")
    assert status.json()["status"] == "accepted"


def test_it_queues_an_unknown_kid_on_a_cold_start_with_the_jwks_unreachable(
    idp: Idp, settings: Any, event_types: Any, make_event: MakeEvent
) -> None:
    settings.JWKS_URL = "http://127.0.0.1:9/certs"  # the discard port: connection refused
    response = post_event(idp.token(idp.keys.rsa_b), make_event())
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "auth_pending"


def test_it_checks_expiry_against_the_time_of_receipt(idp: Idp, event_types: Any) -> None:
    now = int(time.time())
    # Both tokens are expired now; the first was valid when its event arrived 15 min ago.
    valid_then = idp.token(iat=now - 1200, nbf=now - 1200, exp=now - 600)
    expired_then = idp.token(iat=now - 1500, nbf=now - 1500, exp=now - 1000)
    honest = pending_event(idp, valid_then, "evt-1", received_ago=900)
    stale = pending_event(idp, expired_then, "evt-2", received_ago=900)
    assert pending_verify() == {"released": 1, "rejected": 1, "waiting": 0}
    honest.refresh_from_db()
    stale.refresh_from_db()
    assert honest.status == EventStatus.ACCEPTED
    assert stale.status == EventStatus.REJECTED
    assert stale.status_reason.startswith("expired")


def test_it_rejects_a_queued_event_whose_token_lacks_the_role(idp: Idp, event_types: Any) -> None:
    # The intake refuses such a token with 403; an event stored with one is still rejected.
    event = pending_event(idp, idp.token(roles=None, scope="events:read"), "evt-1")
    assert pending_verify()["rejected"] == 1
    event.refresh_from_db()
    assert event.status_reason.startswith("missing_role")


def test_it_keeps_an_ordering_key_waiting_behind_an_unverifiable_event(
    idp: Idp, event_types: Any, make_event: MakeEvent
) -> None:
    keys = idp.keys
    assert jwks_refresh() is True  # key a is cached
    idp.go_down()
    first = pending_event(idp, idp.token(keys.rsa_b), "evt-1", ordering_key="k1")
    second = pending_event(idp, idp.token(), "evt-2", ordering_key="k1")
    other = pending_event(idp, idp.token(), "evt-3", ordering_key="k2")
    assert pending_verify() == {"released": 1, "rejected": 0, "waiting": 2}
    other.refresh_from_db()
    assert other.status == EventStatus.ACCEPTED
    idp.publish(keys.rsa_a, keys.rsa_b)
    assert pending_verify() == {"released": 2, "rejected": 0, "waiting": 0}
    released = AuditRecord.objects.filter(kind="event.verified").order_by("id")
    order = list(released.values_list("event_uid", flat=True))
    assert order == [other.uid, first.uid, second.uid]


def test_it_holds_a_rotated_kid_during_the_cooldown_and_verifies_it_later(
    idp: Idp, settings: Any, event_types: Any, make_event: MakeEvent
) -> None:
    """The identity provider rotates to key b and goes down, within the cool-down of our last
    fetch: every token with the new kid is held (none refused for our keys' age, whatever
    the timing), and verified once keys fetched after their arrival can be had."""
    settings.JWKS_REFETCH_COOLDOWN = 30.0
    keys = idp.keys
    assert post_event(idp.token(), make_event("evt-0")).json()["status"] == "accepted"
    fetched = idp.fetches
    idp.publish(keys.rsa_b)
    first = post_event(idp.token(keys.rsa_b), make_event("evt-1"))
    idp.go_down()
    second = post_event(idp.token(keys.rsa_b), make_event("evt-2"))
    for response in (first, second):
        assert response.status_code == 202, response.content
        assert response.json()["status"] == "auth_pending"
    assert idp.fetches == fetched  # the cool-down holds
    assert pending_verify() == {"released": 0, "rejected": 0, "waiting": 2}
    idp.publish(keys.rsa_b)
    assert pending_verify() == {"released": 2, "rejected": 0, "waiting": 0}
    for response in (first, second):
        event = Event.objects.get(uid=response.json()["id"])
        assert (event.status, event.outbox_state) == (EventStatus.ACCEPTED, OutboxState.PENDING)


def test_it_caps_pending_events_per_issuer(
    idp: Idp, settings: Any, event_types: Any, make_event: MakeEvent
) -> None:
    settings.AUTH_PENDING_MAX_PER_ISSUER = 2
    idp.go_down()
    for n in range(2):
        assert post_event(idp.token(), make_event(f"evt-{n}")).status_code == 202
    response = post_event(idp.token(), make_event("evt-2"))
    assert response.status_code == 503
    assert response.json()["error"] == "auth_pending_full"
    assert int(response["Retry-After"]) > 0
    assert Event.objects.count() == 2


def test_it_lets_a_queued_caller_submit_but_not_read(
    idp: Idp, event_types: Any, make_event: MakeEvent
) -> None:
    idp.go_down()
    token = idp.token()
    created = post_event(token, make_event())
    assert created.json()["status"] == "auth_pending"
    response = bearer_client(token).get(f"/api/v1/events/{created.json()['id']}")
    assert response.status_code == 403


def test_it_refuses_a_token_without_the_role_even_while_queueing(
    idp: Idp, event_types: Any, make_event: MakeEvent
) -> None:
    idp.go_down()
    response = post_event(idp.token(roles=["Reader"]), make_event())
    assert response.status_code == 403
    assert not Event.objects.exists()


def test_it_wakes_the_verifier_as_soon_as_keys_come_back(
    idp: Idp, event_types: Any, make_event: MakeEvent
) -> None:
    broker = get_broker()
    broker.purge_queue()
    idp.go_down()
    assert post_event(idp.token(), make_event("evt-1")).json()["status"] == "auth_pending"
    idp.publish(idp.keys.rsa_a)
    assert post_event(idp.token(), make_event("evt-2")).json()["status"] == "accepted"
    queued = []
    while (task := broker.dequeue()) is not None:
        for ack_id, payload in task:
            queued.append(SignedPackage.loads(payload)["func"])
            broker.acknowledge(ack_id)
    assert queued == ["events.pending.pending_verify"]
