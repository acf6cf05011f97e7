"""The helpdesk as a delivery provider, Richpanel-shaped (SPEC §10):

    header  x-richpanel-key: HELPDESK_API_KEY; every write carries an Idempotency-Key
    PUT  {HELPDESK_URL}/v1/tickets/{id}/add-tags   {"tags": [...]}
    PUT  {HELPDESK_URL}/v1/tickets/{id}            {"ticket": {"team": "..."}}
    POST {HELPDESK_URL}/v1/tickets/{id}/comments   {"comment": {"sender_type": "operator",
                                                    "body": "...", "public": true}}

A message on the `helpdesk` channel is addressed to the ticket id. The routing message
(template `t_helpdesk_routing`) writes the ticket's tags and team as classified; any other
message posts its rendered text as a public reply. It runs on the provider base's send
pipeline (check -> deliver -> classify -> log once); errors classify like every HTTP vendor's
(`http_error`): 429 (with its Retry-After) and 5xx transient, other 4xx permanent, no answer
transient. A routing message retried after a partial success sends both writes again under
the same keys, which the helpdesk recognises.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import requests
from django.conf import settings

from comcenter.lib import http
from delivery.models import Message
from delivery.providers.base import (
    CODE_INVALID,
    HealthResult,
    OutboundMessage,
    Provider,
    ProviderError,
    ProviderSession,
    SendResult,
    http_error,
)
from support.models import Ticket
from support.replies import ROUTING_TEMPLATE


class RichpanelProvider(Provider):
    name = "richpanel"
    channel = "helpdesk"
    config_hint = "HELPDESK_URL and HELPDESK_API_KEY"

    def is_configured(self) -> bool:
        return bool(settings.HELPDESK_URL and settings.HELPDESK_API_KEY)

    def base_url(self) -> str:
        return f"{settings.HELPDESK_URL.rstrip('/')}/v1"

    def headers(self) -> dict[str, str]:
        return {"x-richpanel-key": settings.HELPDESK_API_KEY}

    def session_open(self, *, timeout: float) -> ProviderSession:
        return HelpdeskSession(self, timeout=min(timeout, settings.HELPDESK_TIMEOUT))

    def health_check(self, *, timeout: float) -> HealthResult:
        # A read of one ticket page checks reachability and the key, and writes nothing.
        return self.http_health(
            label="helpdesk",
            url=f"{self.base_url()}/tickets?per_page=1",
            timeout=timeout,
            headers=self.headers(),
        )

    def classify(self, exc: BaseException) -> ProviderError | None:
        if not isinstance(exc, http.HttpError):
            return None
        return http_error(exc, vendor="helpdesk")


class HelpdeskSession(ProviderSession):
    """One keep-alive HTTP session to the helpdesk for a batch of writes."""

    provider: RichpanelProvider

    def __init__(self, provider: RichpanelProvider, *, timeout: float) -> None:
        super().__init__(provider)
        self._timeout = timeout
        self._base = provider.base_url()
        self._headers = {**provider.headers(), "Content-Type": "application/json"}
        self._http: requests.Session | None = http.session_new()

    def deliver(self, message: OutboundMessage) -> SendResult:
        ticket_url = f"{self._base}/tickets/{quote(message.to, safe='')}"
        key = message.message_uid
        row = Message.objects.filter(uid=key).values("template_key", "event_id").first()
        if row is None:
            raise ProviderError("unknown message", permanent=True, response_code=CODE_INVALID)
        if row["template_key"] != ROUTING_TEMPLATE:
            comment = {"comment": {"sender_type": "operator", "body": message.text, "public": True}}
            status = self._write("POST", f"{ticket_url}/comments", comment, key)
            return SendResult(provider_message_id="", response_code=str(status))
        ticket = Ticket.objects.filter(event_id=row["event_id"]).first()
        if ticket is None:
            raise ProviderError("no classified ticket", permanent=True, response_code=CODE_INVALID)
        status = 0
        if ticket.tags:
            status = self._write(
                "PUT", f"{ticket_url}/add-tags", {"tags": ticket.tags}, f"{key}:tags"
            )
        if ticket.team:
            status = self._write(
                "PUT", ticket_url, {"ticket": {"team": ticket.team}}, f"{key}:team"
            )
        return SendResult(provider_message_id="", response_code=str(status))

    def _write(self, method: str, url: str, body: dict[str, Any], key: str) -> int:
        if self._http is None:
            self._http = http.session_new()
        response = http.request(
            method,
            url,
            session=self._http,
            timeout=self._timeout,
            headers={**self._headers, "Idempotency-Key": key},
            data=json.dumps(body).encode(),
        )
        return response.status

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
