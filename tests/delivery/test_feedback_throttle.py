"""The SMS callbacks are throttled per provider like the webhook intake, and only signed
requests count: a flood of unsigned ones cannot use up the gateway's quota."""

from __future__ import annotations

from urllib.parse import urlencode

from identity.throttles import FeedbackThrottle
from identity.twilio_signing import twilio_signature

PUBLIC = "https://comcenter.example.org"
PATH = "/api/v1/feedback/sms"


def test_it_throttles_signed_callbacks_only(client, db, settings, monkeypatch):
    settings.FEEDBACK_PUBLIC_URL = PUBLIC
    settings.SMS_AUTH_TOKEN = "token-1"
    monkeypatch.setattr(FeedbackThrottle, "rate", "2/min")
    form = {"MessageSid": "SM1", "MessageStatus": "sent"}
    signed = twilio_signature(token="token-1", url=PUBLIC + PATH, params=form.items())

    def post(signature: str) -> int:
        return client.post(
            PATH,
            urlencode(form),
            content_type="application/x-www-form-urlencoded",
            HTTP_X_TWILIO_SIGNATURE=signature,
        ).status_code

    assert [post("forged") for _ in range(5)] == [403] * 5
    assert [post(signed) for _ in range(3)] == [204, 204, 429]
