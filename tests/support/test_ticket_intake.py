"""Ticket intake: a `ticket.created` event through the bearer API or a signed webhook; its
`data` is validated field by field, and a bad ticket is a 400 that stores nothing."""

from __future__ import annotations

import json

import pytest

from audit.models import AuditRecord
from events.models import Event
from support.models import Ticket
from tests.delivery.conftest import run_pump
from tests.identity.support import Partner, new_secret
from tests.support.conftest import ticket_event


@pytest.fixture
def partner(settings, support_demo) -> Partner:
    secret = new_secret()
    settings.WEBHOOK_SECRETS_RAW = f"helpdesk={secret}"
    return Partner("helpdesk", secret)


def test_it_accepts_a_ticket_and_classifies_it(post_ticket):
    response = post_ticket(ticket_id="T-30", subject="Refund for my order", body="Wrong size.")
    assert response.status_code == 202

    run_pump()

    ticket = Ticket.objects.get(ticket_id="T-30")
    assert (ticket.intent, ticket.rule_name, ticket.tags, ticket.team) == (
        "returns",
        "Returns and refunds",
        ["returns"],
        "Returns",
    )
    [row] = AuditRecord.objects.filter(kind="support.classified")
    assert row.data["intent"] == "returns"
    assert row.data["rule"] == "Returns and refunds"
    assert "Wrong size" not in json.dumps(row.data)


@pytest.mark.parametrize(
    ("data", "errors"),
    [
        ({"ticket_id": ""}, {"ticket_id": ["This field may not be blank."]}),
        (
            {"customer": {"email": "not-an-address"}},
            {"customer": {"email": ["Enter a valid email address."]}},
        ),
        ({"customer": {"name": "Ada"}}, {"customer": {"email": ["This field is required."]}}),
        (
            {"linked_orders": [{"number": "1"}]},
            {
                "linked_orders": {
                    "0": {
                        "email": ["This field is required."],
                        "status": ["This field is required."],
                    }
                }
            },
        ),
        ({"channel": None}, {"channel": ["This field may not be null."]}),
        ({"priority": "high"}, {"priority": ["Unknown field."]}),
        ({"ticket_id": "a/b"}, {"ticket_id": ["A ticket id cannot be blank or contain '/'."]}),
    ],
    ids=[
        "blank-id",
        "bad-email",
        "no-email",
        "bad-order",
        "null-channel",
        "unknown-field",
        "slash",
    ],
)
def test_it_answers_400_with_field_detail_and_stores_nothing(alice, support_demo, data, errors):
    response = alice.post_event(ticket_event(**data))

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_fields"
    assert body["detail"] == {"data": errors}
    assert Event.objects.count() == 0
    assert Ticket.objects.count() == 0


def test_it_refuses_a_missing_body_field(alice, support_demo):
    event = ticket_event()
    del event["data"]["subject"]
    response = alice.post_event(event)
    assert response.status_code == 400
    assert response.json()["detail"] == {"data": {"subject": ["This field is required."]}}


def test_it_refuses_a_forged_token_and_stores_nothing(alice, support_demo):
    alice.client.credentials(HTTP_AUTHORIZATION=f"Bearer {alice.token[:-4]}AAAA")
    response = alice.post_event(ticket_event())
    assert response.status_code == 401
    assert Event.objects.count() == 0


def test_it_accepts_a_signed_ticket_webhook(partner: Partner):
    body = ticket_event(ticket_id="T-31")
    body.pop("idempotency_key")
    response = partner.send(json.dumps(body), message_id="rp_evt_1")
    assert response.status_code == 202, response.content

    run_pump()

    assert Ticket.objects.get(ticket_id="T-31").caller == "webhook:helpdesk"


def test_it_refuses_a_webhook_with_a_bad_signature_or_bad_data(partner: Partner):
    body = ticket_event(ticket_id="T-32")
    body.pop("idempotency_key")
    raw = json.dumps(body)
    forged = partner.post(raw, **partner.headers(raw, secret=new_secret()))
    unsigned = partner.post(raw, HTTP_WEBHOOK_ID="rp_evt_2")
    body["data"]["customer"] = {}
    bad = json.dumps(body)
    invalid = partner.send(bad, message_id="rp_evt_3")

    assert (forged.status_code, unsigned.status_code, invalid.status_code) == (401, 401, 400)
    assert invalid.json()["detail"] == {
        "data": {"customer": {"email": ["This field is required."]}}
    }
    assert Event.objects.count() == 0
