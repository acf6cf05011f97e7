"""An identity-provider outage, end to end through delivery: an unverified token cannot squat
an idempotency key (the honest event is delivered exactly once, the forgery rejected and
audited), and an event held as auth_pending keeps its place in its ordering key ahead of a
later verified event (worker processes, on SQLite and on PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest

from audit.models import AuditRecord
from delivery.models import Message
from events.models import Event, EventStatus, OutboxState
from events.pending import pending_verify
from identity.jwks import jwks_refresh
from tests.delivery.conftest import run_pump, wait_until
from tests.identity.support import Idp, post_event


def body(key: str, seq: int, **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_type": "deadline_soon",
        "idempotency_key": key,
        "recipient": {"id": "student-42", "email": "ada@example.org", "phone": "+12025550123"},
        "data": {"scholarship": "STEM Futures", "deadline": "2026-12-01", "seq": seq},
    }
    event.update(overrides)
    return event


def pumped_until_sent(count: int) -> bool:
    run_pump()
    return Message.objects.filter(state="sent").count() >= count


def accepted(response: Any, status: str) -> Event:
    assert response.status_code == 202, response.content
    assert response.json()["status"] == status
    return Event.objects.get(uid=response.json()["id"])


@pytest.mark.parametrize("honest_during_outage", [False, True], ids=["after", "during"])
def test_it_delivers_the_honest_event_once_and_rejects_the_key_squatter(
    honest_during_outage: bool,
    idp: Idp,
    routes: Any,
    live: None,
    smtp_server: Any,
    sms_gateway: Any,
) -> None:
    idp.go_down()
    squatter = idp.token(idp.keys.attacker)  # claims the honest service's subject
    forged_body = body("scholarships:evt-81f3", 666)
    forged_body["recipient"] = {"id": "student-42", "email": "mallory@example.org"}
    forged = accepted(post_event(squatter, forged_body), "auth_pending")

    if not honest_during_outage:
        idp.publish(idp.keys.rsa_a)
        assert jwks_refresh() is True
    honest_response = post_event(idp.token(), body("scholarships:evt-81f3", 1))
    honest = accepted(honest_response, "auth_pending" if honest_during_outage else "accepted")
    assert honest.uid != forged.uid
    assert honest_response.json()["duplicate"] is False

    if not honest_during_outage:  # accepted, but waiting behind the squatter's ordering key
        assert honest.outbox_state == OutboxState.HELD
    idp.publish(idp.keys.rsa_a)
    assert pending_verify() == {"released": 1, "rejected": 1, "waiting": 0}
    forged.refresh_from_db()
    assert (forged.status, forged.outbox_state) == (EventStatus.REJECTED, OutboxState.HELD)
    assert forged.status_reason.startswith("bad_signature")
    assert AuditRecord.objects.filter(kind="event.rejected", event_uid=forged.uid).exists()

    wait_until(lambda: pumped_until_sent(2))
    assert len(smtp_server.messages) == 1
    assert smtp_server.messages_to("ada@example.org") == smtp_server.messages
    assert len(sms_gateway.sends) == 1
    assert set(Message.objects.values_list("event_id", flat=True)) == {honest.pk}
    # The key now answers for the honest event only.
    again = post_event(idp.token(), body("scholarships:evt-81f3", 1))
    assert (again.status_code, again.json()["id"]) == (200, str(honest.uid))


def test_it_treats_a_retry_during_the_outage_as_a_duplicate(idp: Idp, routes: Any) -> None:
    idp.go_down()
    first = accepted(post_event(idp.token(), body("evt-retried", 1)), "auth_pending")
    retry = accepted(post_event(idp.token(), body("evt-retried", 1)), "auth_pending")
    other = accepted(post_event(idp.token(), body("evt-other-payload", 1)), "auth_pending")
    conflict = accepted(post_event(idp.token(), body("evt-other-payload", 2)), "auth_pending")
    idp.publish(idp.keys.rsa_a)
    assert pending_verify() == {"released": 2, "rejected": 2, "waiting": 0}
    states = {
        e.uid: (e.status, e.status_reason.split(":")[0])
        for e in Event.objects.filter(pk__in=[first.pk, retry.pk, other.pk, conflict.pk])
    }
    assert states[first.uid][0] == states[other.uid][0] == EventStatus.ACCEPTED
    assert states[retry.uid] == (EventStatus.REJECTED, "duplicate")
    assert states[conflict.uid] == (EventStatus.REJECTED, "idempotency_conflict")


@pytest.mark.slow
@pytest.mark.parametrize("sequenced", [False, True], ids=["receipt order", "sequence order"])
def test_it_dispatches_a_held_event_before_a_later_verified_one_of_its_key(
    sequenced: bool,
    idp: Idp,
    settings: Any,
    routes: Any,
    live: None,
    workers: Any,
    smtp_server: Any,
    sms_gateway: Any,
) -> None:
    # Long enough that a sequence gap is never what lets the later event through.
    settings.ORDERING_GAP_WAIT = 600.0
    extra = (lambda n: {"sequence": n}) if sequenced else (lambda n: {})
    idp.go_down()
    held = accepted(post_event(idp.token(), body("evt-1", 1, **extra(1))), "auth_pending")
    idp.publish(idp.keys.rsa_a)
    assert jwks_refresh() is True
    later = accepted(post_event(idp.token(), body("evt-2", 2, **extra(2))), "accepted")
    assert later.outbox_state == OutboxState.HELD  # behind the auth_pending event of its key

    workers.start(2, EMAIL_URL=smtp_server.email_url, ORDERING_GAP_WAIT="600", **sms_gateway.env())
    # Another key's event goes through meanwhile: the workers run, and pass the held key by.
    elsewhere = body("evt-3", 3, ordering_key="another-key")
    elsewhere["recipient"] = {"id": "student-7", "email": "bo@example.org", "phone": "+12025550199"}
    accepted(post_event(idp.token(), elsewhere), "accepted")
    wait_until(lambda: Message.objects.filter(state="sent").count() == 2)
    assert not Message.objects.filter(event__in=[held, later]).exists()

    assert pending_verify()["released"] == 2  # the held event, then the one behind it
    wait_until(lambda: Message.objects.filter(state="sent").count() == 6)
    key_messages = Message.objects.filter(ordering_key="student-42")
    for channel in ("email", "sms"):
        lane = key_messages.filter(channel=channel).order_by("dispatched_at", "id")
        assert [m.event_id for m in lane] == [held.pk, later.pk]
    emails = smtp_server.messages_to("ada@example.org")
    assert [m.message["Subject"].split(":")[0] for m in emails] == ["Seq 1", "Seq 2"]
