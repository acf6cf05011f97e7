"""Intake throttles, backed by the shared cache (Redis in production) so the limit holds
across every web process and node; `Retry-After` comes with each 429."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework.throttling import SimpleRateThrottle

from events.identity import Caller

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView


class IntakeThrottle(SimpleRateThrottle):
    """Per caller (service account, identity-provider subject or webhook source)."""

    scope = "intake"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        caller = request.user
        ident = caller.caller_id if isinstance(caller, Caller) else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class TokenThrottle(SimpleRateThrottle):
    """Per client address, against credential guessing."""

    scope = "token"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class WebhookThrottle(IntakeThrottle):
    """Per webhook source (the caller `webhook:<source>`), counted after the signature
    check so that unsigned requests cannot use up a partner's quota."""

    scope = "webhook"
