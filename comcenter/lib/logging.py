"""JSON-lines logging with the request id on every record and a redaction filter.

Message bodies, addresses, phone numbers and tokens must never reach a log. Code should not
log them in the first place; the filter is the second line of defence and scrubs anything
that looks like one from the message and from every extra field."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from comcenter.lib.context import get_request_id

REDACTED = "[redacted]"

# Keys whose values are never logged, whatever they hold.
SENSITIVE_KEYS = frozenset(
    {
        "body",
        "text",
        "html",
        "subject",
        "email",
        "phone",
        "to",
        "to_address",
        "address",
        "recipient",
        "token",
        "access_token",
        "authorization",
        "password",
        "secret",
        "client_secret",
        "data",
    }
)

_PATTERNS = [
    # JWTs (three base64url segments) and bearer credentials
    re.compile(r"eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"),
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]+"),
    # email addresses
    re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}"),
    # E.164-like phone numbers
    re.compile(r"\+\d[\d \-]{6,}\d"),
    # webhook secrets and client secrets we issue
    re.compile(r"whsec_[A-Za-z0-9+/=]+"),
    re.compile(r"\bccs_[A-Za-z0-9_\-]{16,}"),
]

# Attributes every LogRecord has; anything else was passed through `extra=`.
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def redact_text(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def redact_value(key: str, value: Any) -> Any:
    if key.lower() in SENSITIVE_KEYS:
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value("", v) for v in value]
    return value


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = get_request_id()
        return True


class RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redact_text(message)
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and key != "request_id":
                setattr(record, key, redact_value(key, value))
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", "") or get_request_id(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in entry:
                entry[key] = value
        if record.exc_text:
            entry["exc"] = record.exc_text
        elif record.exc_info:
            entry["exc"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)
