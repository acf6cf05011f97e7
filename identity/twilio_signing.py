"""Twilio's request signature (`X-Twilio-Signature`), for the SMS gateway's callbacks.

The signature is base64(HMAC-SHA1(auth token, URL + each POST parameter's name and value,
sorted by name)), over the URL the gateway called: behind a proxy that is the public URL
(FEEDBACK_PUBLIC_URL + the request's path and query), not the host Django sees. Twilio signs
no timestamp, so a valid request can be replayed: the receivers make a replay harmless
instead (delivery/feedback_sms.py dedupes status callbacks by sid and status).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

from django.conf import settings
from django.http import HttpRequest


def twilio_signature(*, token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """The signature Twilio sends for a POST of `params` to `url` (values of a repeated name
    in sorted order, as Twilio's own validators sort them)."""
    payload = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(token.encode(), payload.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def signed_url(request: HttpRequest) -> str:
    """The URL the gateway signed: FEEDBACK_PUBLIC_URL + path (and query) when configured,
    else the request's own absolute URL."""
    if settings.FEEDBACK_PUBLIC_URL:
        return settings.FEEDBACK_PUBLIC_URL + request.get_full_path()
    return request.build_absolute_uri()


def twilio_request_valid(request: HttpRequest, params: Iterable[tuple[str, str]]) -> bool:
    """True when `X-Twilio-Signature` signs this request with SMS_AUTH_TOKEN (compared in
    constant time); False without a token configured or without the header."""
    given = request.META.get("HTTP_X_TWILIO_SIGNATURE", "")
    token = settings.SMS_AUTH_TOKEN
    if not token or not given:
        return False
    expected = twilio_signature(token=token, url=signed_url(request), params=params)
    return hmac.compare_digest(expected.encode(), given.encode("latin-1", "replace"))
