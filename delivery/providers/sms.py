"""SMS through any gateway speaking Twilio's Messages API (SPEC §5):

    POST {SMS_GATEWAY_URL}/2010-04-01/Accounts/{SMS_ACCOUNT_SID}/Messages.json
    form To, From, Body; HTTP basic auth SID:SMS_AUTH_TOKEN; 201 {"sid": ...}

Errors answer a JSON body {"code": <Twilio error code>, "message": ..., "status": ...}. The
`message` quotes the phone number, so only the numeric code travels on.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import quote

import requests
from django.conf import settings

from comcenter.lib import http
from delivery.models import Suppression
from delivery.providers.base import (
    HealthResult,
    OutboundMessage,
    Provider,
    ProviderError,
    ProviderSession,
    SendResult,
    http_error,
)

logger = logging.getLogger(__name__)

API_PREFIX = "/2010-04-01/Accounts"
# Our status callback endpoint (comcenter/urls.py), below FEEDBACK_PUBLIC_URL.
STATUS_CALLBACK_PATH = "/api/v1/feedback/sms"


class TwilioSmsProvider(Provider):
    name = "twilio"
    channel = "sms"
    config_hint = "SMS_GATEWAY_URL, SMS_ACCOUNT_SID, SMS_AUTH_TOKEN and SMS_FROM"

    # Twilio error codes worth naming in attempts and logs. Permanence follows the HTTP
    # status (429 and 5xx transient, other 4xx permanent); the code only explains it, and
    # lets the dispatcher tell an opt-out (21610) from a bad number (21211).
    ERROR_CODES: dict[int, str] = {
        20001: "unknown parameter",
        20003: "authentication failed",
        20404: "resource not found",
        20429: "too many requests",
        20500: "gateway internal error",
        20503: "gateway unavailable",
        21211: "invalid 'To' phone number",
        21212: "invalid 'From' phone number",
        21408: "sending to this region is not enabled",
        21602: "message body is required",
        21604: "'To' phone number is required",
        21606: "'From' number cannot send SMS",
        21610: "recipient has opted out (STOP)",
        21612: "'To' number cannot be reached from the 'From' number",
        21614: "'To' number is not a mobile number",
        21617: "message body too long",
        30001: "queue overflow",
        30007: "carrier filtered the message",
    }

    # Codes that say the number itself must not be tried again (the batch suppresses it).
    SUPPRESSING_CODES: dict[int, str] = {
        21610: Suppression.Reason.OPT_OUT,
        21614: Suppression.Reason.BOUNCE,
    }

    def is_configured(self) -> bool:
        return bool(
            settings.SMS_GATEWAY_URL
            and settings.SMS_ACCOUNT_SID
            and settings.SMS_AUTH_TOKEN
            and settings.SMS_FROM
        )

    def account_url(self) -> str:
        base = settings.SMS_GATEWAY_URL.rstrip("/")
        return f"{base}{API_PREFIX}/{quote(settings.SMS_ACCOUNT_SID, safe='')}"

    def auth(self) -> tuple[str, str]:
        return (settings.SMS_ACCOUNT_SID, settings.SMS_AUTH_TOKEN)

    def session_open(self, *, timeout: float) -> ProviderSession:
        return SmsSession(self, timeout=min(timeout, settings.SMS_TIMEOUT))

    def health_check(self, *, timeout: float) -> HealthResult:
        # Fetching the account resource checks reachability and credentials, sends nothing.
        return self.http_health(
            label="gateway", url=f"{self.account_url()}.json", timeout=timeout, auth=self.auth()
        )

    def classify(self, exc: BaseException) -> ProviderError | None:
        if not isinstance(exc, http.HttpError):
            return None
        code = _error_code(exc.body) if exc.status is not None else None
        meaning = self.ERROR_CODES.get(code, f"error code {code}") if code else "no error code"
        return http_error(
            exc,
            vendor="gateway",
            meaning=meaning,
            code=str(code or ""),
            suppress=self.SUPPRESSING_CODES.get(code, "") if code else "",
        )


def _error_code(body: bytes) -> int | None:
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    code = payload.get("code") if isinstance(payload, dict) else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


class SmsSession(ProviderSession):
    """One keep-alive HTTP session to the gateway for a batch of sends."""

    provider: TwilioSmsProvider

    def __init__(self, provider: TwilioSmsProvider, *, timeout: float) -> None:
        super().__init__(provider)
        self._timeout = timeout
        self._url = f"{provider.account_url()}/Messages.json"
        self._auth = provider.auth()
        self._from = settings.SMS_FROM
        # Where the gateway reports what became of each message (delivery/feedback_sms.py).
        self._callback = (
            f"{settings.FEEDBACK_PUBLIC_URL}{STATUS_CALLBACK_PATH}"
            if settings.FEEDBACK_PUBLIC_URL
            else ""
        )
        self._http: requests.Session | None = http.session_new()

    def deliver(self, message: OutboundMessage) -> SendResult:
        if self._http is None:
            self._http = http.session_new()
        response = http.request(
            "POST",
            self._url,
            session=self._http,
            timeout=self._timeout,
            # Stable across attempts, so a gateway that dedupes keys sends once even when
            # a worker dies between writing the request and reading the answer.
            headers={"Idempotency-Key": message.message_uid},
            data=self._form(message),
            auth=self._auth,
        )
        return SendResult(provider_message_id=_sid(response), response_code=str(response.status))

    def _form(self, message: OutboundMessage) -> dict[str, str]:
        form = {"To": message.to, "From": self._from, "Body": message.text}
        if self._callback:
            form["StatusCallback"] = self._callback
        return form

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None


def _sid(response: http.HttpResponse) -> str:
    # A 2xx is an acceptance whatever the body says: raising here would resend a message
    # the gateway already took. An unreadable body only costs us the vendor id.
    try:
        payload = response.json()
    except http.HttpError:
        payload = None
    sid = payload.get("sid") if isinstance(payload, dict) else None
    if isinstance(sid, str):
        return sid
    logger.warning("sms gateway accepted without a sid", extra={"status": response.status})
    return ""
