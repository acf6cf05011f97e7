"""Provider feedback over real HTTP (gunicorn with the project's routing and middleware):
Twilio-signed SMS status and inbound callbacks, and django-anymail's own tracking webhooks
for Postmark (basic auth) and Mailgun (basic auth + HMAC signature), valid and forged.

The server runs behind a pretend proxy: FEEDBACK_PUBLIC_URL names the public host the
gateway signs, not the loopback address the test connects to."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from audit.models import AuditRecord
from delivery.models import Attempt, Message, MessageState, ProviderReceipt, Suppression
from tests.delivery.conftest import run_pump
from tests.support.web import WebServer

PUBLIC = "https://comcenter.example.org"
TOKEN = "twilio-test-auth-token"
BASIC = ("anymail", "webhook-secret-1")
MAILGUN_KEY = "mailgun-signing-key-1"
ADA = "ada@example.org"
PHONE = "+12025550123"


@pytest.fixture(scope="module", params=["gunicorn", "granian"])
def web(
    request: Any, django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: Any
) -> Iterator[str]:
    """The web server of `make run` and production (granian over RSGI) and gunicorn: both
    route /api/v1/ through the API's middleware chain and /anymail/ through the full one."""
    with django_db_blocker.unblock():
        server = WebServer(
            tmp_path_factory.mktemp("web"),
            workers=1,
            server=request.param,
            SMS_AUTH_TOKEN=TOKEN,
            FEEDBACK_PUBLIC_URL=PUBLIC,
            EMAIL_TRACKING_ESPS="postmark,mailgun",
            ANYMAIL_WEBHOOK_SECRET=":".join(BASIC),
            ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY=MAILGUN_KEY,
            THROTTLE_FEEDBACK="1000/min",
        ).start()
    try:
        yield server.base
    finally:
        server.stop()


@pytest.fixture
def live_db(transactional_db: Any, settings: Any) -> None:
    # The server reads what the test writes: committed rows (transactional_db).
    settings.SMS_AUTH_TOKEN = TOKEN


def sign(url: str, form: dict[str, str], token: str = TOKEN) -> str:
    """Twilio's algorithm, written out here rather than borrowed from the code under test."""
    data = url + "".join(k + form[k] for k in sorted(form))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def twilio_post(web: str, path: str, form: dict[str, str], signature: str | None = "") -> Any:
    headers = {}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature or sign(PUBLIC + path, form)
    return requests.post(web + path, data=form, headers=headers, timeout=10)


def sent_sms(accept: Any) -> Message:
    event = accept()
    run_pump()
    message = Message.objects.get(event=event, channel="sms")
    assert message.state == MessageState.SENT
    return message


def sid_of(message: Message) -> str:
    return Attempt.objects.get(message=message, outcome="sent").provider_message_id


# --- SMS status callbacks ----------------------------------------------------------------


def test_a_signed_delivered_callback_marks_the_sms_delivered_and_a_replay_changes_nothing(
    web, live_db, sms_only, accept, live, sms_gateway
):
    message = sent_sms(accept)
    form = {"MessageSid": sid_of(message), "MessageStatus": "delivered", "AccountSid": "AC1"}

    first = twilio_post(web, "/api/v1/feedback/sms", form)
    replay = twilio_post(web, "/api/v1/feedback/sms", form)

    assert (first.status_code, replay.status_code) == (204, 204)
    message.refresh_from_db()
    assert message.state == MessageState.DELIVERED
    rows = AuditRecord.objects.filter(message_uid=message.uid, kind="message.delivered")
    assert rows.count() == 1
    assert ProviderReceipt.objects.count() == 1


def test_the_sms_provider_asks_for_status_callbacks_at_the_public_url(
    sms_only, accept, live, sms_gateway, settings
):
    settings.FEEDBACK_PUBLIC_URL = PUBLIC
    sent_sms(accept)

    assert sms_gateway.sends[0].form["StatusCallback"] == f"{PUBLIC}/api/v1/feedback/sms"


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(None, id="missing"),
        pytest.param("bm90IGEgc2lnbmF0dXJl", id="forged"),
        pytest.param("wrong-token", id="other-token"),
        pytest.param("local-url", id="signed-for-the-local-url"),
    ],
)
def test_an_unsigned_or_forged_callback_is_refused_and_changes_nothing(
    web, live_db, sms_only, accept, live, sms_gateway, signature
):
    message = sent_sms(accept)
    form = {"MessageSid": sid_of(message), "MessageStatus": "undelivered", "ErrorCode": "21610"}
    if signature == "wrong-token":
        signature = sign(PUBLIC + "/api/v1/feedback/sms", form, token="another-token")
    elif signature == "local-url":
        # Behind the proxy the gateway signs the public URL; the local one is not it.
        signature = sign(web + "/api/v1/feedback/sms", form)

    answer = twilio_post(web, "/api/v1/feedback/sms", form, signature)

    assert answer.status_code == 403
    assert answer.json()["error"] == "forbidden"
    message.refresh_from_db()
    assert message.state == MessageState.SENT
    assert not ProviderReceipt.objects.exists()
    assert not Suppression.objects.exists()


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"MessageSid": "SM1", "MessageStatus": "exploded"}, "MessageStatus"),
        ({"MessageStatus": "delivered"}, "MessageSid"),
        ({"MessageSid": "SM 1; drop", "MessageStatus": "delivered"}, "MessageSid"),
        ({"MessageSid": "SM1", "MessageStatus": "failed", "ErrorCode": "x1"}, "ErrorCode"),
    ],
)
def test_a_signed_but_malformed_callback_is_a_400_naming_the_field(web, live_db, form, field):
    answer = twilio_post(web, "/api/v1/feedback/sms", form)

    assert answer.status_code == 400
    assert field in json.dumps(answer.json())
    assert not ProviderReceipt.objects.exists()


def test_an_unknown_sid_is_answered_204_and_moves_nothing(
    web, live_db, sms_only, accept, live, sms_gateway
):
    message = sent_sms(accept)
    form = {"MessageSid": "SM" + uuid.uuid4().hex, "MessageStatus": "undelivered"}

    answer = twilio_post(web, "/api/v1/feedback/sms", form)

    assert answer.status_code == 204
    message.refresh_from_db()
    assert message.state == MessageState.SENT
    assert ProviderReceipt.objects.get().state == "pending"  # in case it overtook the send


def test_an_opt_out_error_suppresses_the_number(web, live_db, sms_only, accept, live, sms_gateway):
    message = sent_sms(accept)
    form = {"MessageSid": sid_of(message), "MessageStatus": "undelivered", "ErrorCode": "21610"}

    assert twilio_post(web, "/api/v1/feedback/sms", form).status_code == 204

    message.refresh_from_db()
    assert message.state == MessageState.UNDELIVERED
    assert Suppression.objects.get(channel="sms").reason == Suppression.Reason.OPT_OUT


def test_stop_suppresses_the_number_and_start_lifts_it(
    web, live_db, sms_only, accept, live, sms_gateway
):
    inbound = "/api/v1/feedback/sms/inbound"
    stop = {"MessageSid": "SM" + uuid.uuid4().hex, "From": PHONE, "Body": " stop "}

    answer = twilio_post(web, inbound, stop)

    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/xml")
    held = accept()
    run_pump()
    assert Message.objects.get(event=held).state == MessageState.SUPPRESSED
    assert sms_gateway.sends == []

    start = {"MessageSid": "SM" + uuid.uuid4().hex, "From": PHONE, "Body": "START"}
    assert twilio_post(web, inbound, start).status_code == 200
    assert not Suppression.objects.exists()
    sent_sms(accept)
    assert len(sms_gateway.sends) == 1


def test_an_inbound_sms_with_a_bad_number_is_a_400(web, live_db):
    form = {"MessageSid": "SM1", "From": "12025550123", "Body": "STOP"}

    answer = twilio_post(web, "/api/v1/feedback/sms/inbound", form)

    assert answer.status_code == 400
    assert "From" in json.dumps(answer.json())
    assert not Suppression.objects.exists()


# --- anymail tracking webhooks -------------------------------------------------------------


def sent_email(accept: Any) -> tuple[Message, str]:
    event = accept()
    run_pump()
    message = Message.objects.get(event=event, channel="email")
    assert message.state == MessageState.SENT
    return message, Attempt.objects.get(message=message, outcome="sent").provider_message_id


def postmark(web: str, body: dict[str, Any], auth: tuple[str, str] | None = BASIC) -> Any:
    return requests.post(f"{web}/anymail/postmark/tracking/", json=body, auth=auth, timeout=10)


def postmark_bounce(message_id: str, bounce_type: str = "HardBounce") -> dict[str, Any]:
    # The shape of Postmark's bounce webhook (as in anymail's own Postmark tests).
    return {
        "RecordType": "Bounce",
        "ID": int(time.time() * 1000),
        "Type": bounce_type,
        "TypeCode": 1,
        "Name": "Hard bounce",
        "Tag": "",
        "MessageID": message_id,
        "ServerID": 23,
        "Description": "The server was unable to deliver your message.",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": ADA,
        "From": "comcenter@localhost",
        "BouncedAt": "2026-12-02T07:00:00.1482326-05:00",
        "DumpAvailable": False,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Seq 0",
        "Metadata": {},
    }


def test_a_postmark_hard_bounce_suppresses_and_the_next_email_is_not_sent(
    web, live_db, email_only, accept, live, smtp_server
):
    message, message_id = sent_email(accept)

    answer = postmark(web, postmark_bounce(message_id))

    assert answer.status_code == 200
    message.refresh_from_db()
    assert message.state == MessageState.UNDELIVERED
    assert Suppression.objects.get(channel="email").reason == Suppression.Reason.BOUNCE
    later = accept()
    run_pump()
    assert Message.objects.get(event=later).state == MessageState.SUPPRESSED
    assert len(smtp_server.messages) == 1


def test_a_postmark_delivery_and_a_soft_bounce(web, live_db, email_only, accept, live, smtp_server):
    message, message_id = sent_email(accept)
    other, other_id = sent_email(accept)
    delivery = {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageID": message_id,
        "Recipient": ADA,
        "Tag": "",
        "DeliveredAt": "2026-12-02T07:00:10.2735393-05:00",
        "Details": "Test delivery webhook details",
        "Metadata": {},
    }

    assert postmark(web, delivery).status_code == 200
    assert postmark(web, postmark_bounce(other_id, "SoftBounce")).status_code == 200

    message.refresh_from_db()
    other.refresh_from_db()
    assert (message.state, other.state) == (MessageState.DELIVERED, MessageState.SENT)
    assert ProviderReceipt.objects.get(message=other).kind == "bounced_soft"
    assert not Suppression.objects.exists()  # one soft bounce is under the limit


@pytest.mark.parametrize(
    "auth", [pytest.param(None, id="missing"), pytest.param(("anymail", "guess"), id="wrong")]
)
def test_a_postmark_webhook_without_its_basic_auth_is_refused(
    web, live_db, email_only, accept, live, smtp_server, auth
):
    message, message_id = sent_email(accept)

    answer = postmark(web, postmark_bounce(message_id), auth=auth)

    assert answer.status_code == 400
    message.refresh_from_db()
    assert message.state == MessageState.SENT
    assert not Suppression.objects.exists()
    assert not ProviderReceipt.objects.exists()


def test_an_unreadable_tracking_body_is_a_400_not_a_500(web, live_db):
    answer = requests.post(
        f"{web}/anymail/postmark/tracking/",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
        auth=BASIC,
        timeout=10,
    )

    assert answer.status_code == 400


def mailgun_event(message_id: str, event: str, key: str = MAILGUN_KEY) -> dict[str, Any]:
    # Mailgun's signed JSON webhook (as in anymail's own Mailgun tests).
    timestamp, token = str(int(time.time())), uuid.uuid4().hex
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256)
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature.hexdigest()},
        "event-data": {
            "event": event,
            "timestamp": time.time(),
            "id": uuid.uuid4().hex[:22],
            "recipient": ADA,
            "message": {"headers": {"message-id": message_id.strip("<>")}},
            "delivery-status": {"code": 250, "message": "OK", "description": ""},
        },
    }


def mailgun(web: str, body: dict[str, Any], auth: tuple[str, str] | None = BASIC) -> Any:
    return requests.post(f"{web}/anymail/mailgun/tracking/", json=body, auth=auth, timeout=10)


def test_a_signed_mailgun_delivery_marks_the_email_delivered(
    web, live_db, email_only, accept, live, smtp_server
):
    message, message_id = sent_email(accept)
    body = mailgun_event(message_id, "delivered")

    assert mailgun(web, body).status_code == 200
    assert mailgun(web, body).status_code == 200  # the ESP retried: the same token

    message.refresh_from_db()
    assert message.state == MessageState.DELIVERED
    assert ProviderReceipt.objects.count() == 1


@pytest.mark.parametrize(
    ("key", "auth"),
    [
        pytest.param("not-the-key", BASIC, id="forged-signature"),
        pytest.param(MAILGUN_KEY, None, id="no-basic-auth"),
    ],
)
def test_a_forged_mailgun_webhook_is_refused(
    web, live_db, email_only, accept, live, smtp_server, key, auth
):
    message, message_id = sent_email(accept)

    answer = mailgun(web, mailgun_event(message_id, "complained", key=key), auth=auth)

    assert answer.status_code == 400
    message.refresh_from_db()
    assert message.state == MessageState.SENT
    assert not Suppression.objects.exists()


def test_an_esp_not_configured_has_no_tracking_url(web, live_db):
    answer = requests.post(f"{web}/anymail/sendgrid/tracking/", json=[], auth=BASIC, timeout=10)

    assert answer.status_code == 404
