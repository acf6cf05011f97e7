"""Standard Webhooks signatures: the secrets of WEBHOOK_SECRETS and the check of the
`webhook-id`, `webhook-timestamp` and `webhook-signature` headers.

Why not the `standardwebhooks` package at run time: on malformed headers it raises a bare
ValueError, binascii.Error or UnicodeDecodeError instead of its own error, it
verifies one secret per object and hard-codes the tolerance. The check is short; it is written
here from the specification and the tests use the package as an independent signer.

Signed content: `{webhook-id}.{webhook-timestamp}.{raw body}`, HMAC-SHA256 keyed with the
base64-decoded part of the secret after `whsec_`; the header holds space-separated
`v1,<base64 signature>` entries (other versions are ignored), any of which may match any of
the source's secrets (rotation). `WebhookSignatureAuthentication` applies the check to a
request: the body size first (413, before any HMAC is computed), then the headers.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from rest_framework import authentication

from comcenter.lib.body import body_read
from identity.auth import AuthFailed, record_auth_failure
from identity.caller import Caller

if TYPE_CHECKING:
    from rest_framework.request import Request

from comcenter.lib.wire import IDEMPOTENCY_KEY_RULE, idempotency_key_valid

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 16
MAX_SIGNATURE_HEADER = 4096
SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")

_FORMAT = "WEBHOOK_SECRETS must be comma-separated source=whsec_<base64> pairs"


class SignatureRejected(Exception):
    """The request is not signed by the source. `reason` is the API error code; the metric
    tells an unknown source apart, the answer does not (no probing for source names)."""

    def __init__(self, reason: str, detail: str, *, metric_reason: str = "") -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.metric_reason = metric_reason or reason


def webhook_secrets_parse(raw: str) -> dict[str, tuple[bytes, ...]]:
    """The secrets of each source; ImproperlyConfigured naming WEBHOOK_SECRETS (never a
    secret) when an entry is malformed. A source may repeat: all its secrets are valid."""
    secrets: dict[str, list[bytes]] = {}
    for index, entry in enumerate(raw.split(","), start=1):
        if not entry.strip():
            continue
        source, sep, secret = (part.strip() for part in entry.partition("="))
        if not sep or not SOURCE_NAME.fullmatch(source):
            raise ImproperlyConfigured(
                f"{_FORMAT}; entry {index} has no valid source name "
                "(letters, digits, '.', '_', '-'; at most 64)"
            )
        if not secret.startswith(SECRET_PREFIX):
            raise ImproperlyConfigured(f"{_FORMAT}; the secret of {source!r} lacks 'whsec_'")
        encoded = secret[len(SECRET_PREFIX) :]
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except ValueError:  # binascii.Error, or a non-ASCII character
            raise ImproperlyConfigured(
                f"{_FORMAT}; the secret of {source!r} is not base64"
            ) from None
        if len(key) < MIN_SECRET_BYTES:
            raise ImproperlyConfigured(
                f"{_FORMAT}; the secret of {source!r} is shorter than {MIN_SECRET_BYTES} bytes"
            )
        secrets.setdefault(source, []).append(key)
    return {source: tuple(keys) for source, keys in secrets.items()}


@functools.lru_cache(maxsize=4)
def _parsed(raw: str) -> dict[str, tuple[bytes, ...]]:
    return webhook_secrets_parse(raw)


def webhook_secrets() -> dict[str, tuple[bytes, ...]]:
    """The configured secrets by source, parsed once (identity.apps checks them at start-up)."""
    return _parsed(settings.WEBHOOK_SECRETS_RAW)


def webhook_signature_verify(
    *,
    secrets: Sequence[bytes],
    message_id: str | None,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
    tolerance: int,
) -> None:
    """Pass silently when one v1 signature matches one secret; SignatureRejected otherwise.

    An unknown source has no secrets and fails like a wrong signature."""
    if not message_id or not timestamp or not signature:
        raise SignatureRejected(
            "malformed", "webhook-id, webhook-timestamp and webhook-signature are required."
        )
    if not idempotency_key_valid(message_id):
        # It is the event's idempotency key, so it follows the key's rule.
        raise SignatureRejected("malformed", f"webhook-id must be {IDEMPOTENCY_KEY_RULE}.")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise SignatureRejected(
            "malformed", "webhook-timestamp must be whole seconds since the Unix epoch."
        )
    if abs(now - int(timestamp)) > tolerance:
        raise SignatureRejected(
            "stale_timestamp", f"webhook-timestamp is more than {tolerance} s from our clock."
        )
    candidates = _v1_signatures(signature)
    if not candidates:
        raise SignatureRejected(
            "malformed", "webhook-signature holds no well-formed 'v1,<base64>' signature."
        )
    signed = f"{message_id}.{timestamp}.".encode("ascii") + body
    matched = False
    for secret in secrets:
        expected = hmac.new(secret, signed, hashlib.sha256).digest()
        for candidate in candidates:
            # No early exit: the time taken does not depend on which entry matched.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureRejected(
            "bad_signature",
            "No signature matches the body.",
            metric_reason="bad_signature" if secrets else "unknown_source",
        )


def _v1_signatures(header: str) -> list[bytes]:
    if len(header) > MAX_SIGNATURE_HEADER:
        return []
    signatures = []
    for entry in header.split():
        version, sep, value = entry.partition(",")
        if not sep or version != "v1":
            continue
        try:
            digest = base64.b64decode(value, validate=True)
        except ValueError:
            # binascii.Error for bad base64, a plain ValueError for a non-ASCII character
            # (a header byte over 0x7f arrives as a Latin-1 character).
            continue
        if len(digest) == hashlib.sha256().digest_size:
            signatures.append(digest)
    return signatures


class WebhookSignatureAuthentication(authentication.BaseAuthentication):
    """The caller `webhook:<source>` with scope events:write, for a valid signature."""

    def authenticate(self, request: Request) -> tuple[Caller, None]:
        kwargs = (request.parser_context or {}).get("kwargs", {})
        source = str(kwargs.get("source", ""))
        body = body_read(request, max_bytes=settings.MAX_EVENT_BYTES)
        meta = request.META
        try:
            webhook_signature_verify(
                secrets=webhook_secrets().get(source, ()),
                message_id=meta.get("HTTP_WEBHOOK_ID"),
                timestamp=meta.get("HTTP_WEBHOOK_TIMESTAMP"),
                signature=meta.get("HTTP_WEBHOOK_SIGNATURE"),
                body=body,
                now=time.time(),
                tolerance=settings.WEBHOOK_TOLERANCE_SECONDS,
            )
        except SignatureRejected as exc:
            record_auth_failure(f"webhook_{exc.metric_reason}")
            raise AuthFailed(exc.reason, exc.detail) from None
        caller = Caller(
            caller_id=f"webhook:{source}", scopes=frozenset({"events:write"}), kind="webhook"
        )
        return caller, None

    def authenticate_header(self, request: Request) -> str:
        # A 401 needs a challenge (DRF turns a 401 without one into a 403).
        return 'Webhook-Signature realm="comcenter"'
