"""JSON-lines logging with the request id on every record and redaction of personal data.

Message bodies, addresses, phone numbers and tokens must never reach a log. Code should not
log them in the first place; this module is the second line of defence and scrubs every path
a value can take into a log line:

- the format arguments (`log.info("to %s", x)`): structured values are redacted by key before
  formatting (a dict with a `body` key), then the formatted text by pattern;
- the message text itself, by pattern (emails, E.164 phones, JWTs, bearer/basic credentials,
  credentials in URLs, `password=…`-style pairs, our secret formats);
- every `extra=` field: sensitive keys (`body`, `email`, `*_token`, …) are replaced whole,
  other strings are scanned, nested dicts/lists walked, other objects stringified and scanned;
- exception text and stack traces (an exception message often quotes the offending value).

`RedactFilter` rewrites the record (so every handler after it sees a clean record) and
`JsonFormatter` redacts again as it renders, so a handler configured without the filter
still cannot leak.

Patterns cannot recognise a free-text body (an SMS text, a subject line) in a message or an
exception text. Code that holds such values declares them for the work in progress with
`sensitive_values(body, subject, address)`: while that block runs, every occurrence of them
in any log line of the same thread or task is replaced, whatever path it took.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import logging.config
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from comcenter.lib.context import get_request_id

REDACTED = "[redacted]"

# Keys whose values are never logged, whatever they hold (compared lower-case, "-" as "_").
SENSITIVE_KEYS = frozenset(
    {
        "body",
        "text",
        "html",
        "subject",
        "content",
        "payload",
        "raw_body",
        "data",
        "email",
        "phone",
        "to",
        "to_address",
        "address",
        "recipient",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "pending_token",
        "authorization",
        "cookie",
        "set_cookie",
        "password",
        "secret",
        "client_secret",
        "api_key",
        "signature",
        "webhook_signature",
        "credentials",
    }
)
# ...and keys ending in one of these (recipient_email, sms_auth_token, webhook_secret, ...).
SENSITIVE_SUFFIXES = ("_email", "_phone", "_token", "_secret", "_password", "_body", "_key")
# Keys ending in "_key" that are identifiers, not secrets.
NOT_SENSITIVE = frozenset({"idempotency_key", "ordering_key", "template_key", "cache_key"})

_SECRET_WORDS = (
    r"password|passwd|pwd|secret|client_secret|token|access_token|refresh_token|api_key|"
    r"apikey|auth_token|authorization|signature"
)
_PATTERNS = [
    # JWTs (three base64url segments) and bearer/basic credentials
    re.compile(r"eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"),
    re.compile(r"(?i)\b(?:bearer|basic)\s+[A-Za-z0-9._~+/=\-]+"),
    # credentials inside URLs: scheme://user:password@host
    re.compile(r"(?i)(?<=://)[^/\s:@]+:[^/\s@]+@"),
    # key=value and "key": "value" pairs that name a secret
    re.compile(rf"""(?i)(?<![\w])(?:{_SECRET_WORDS})(["']?\s*[:=]\s*["']?)[^\s"'&,;}}\]]+"""),
    # email addresses, also URL-encoded (%40)
    re.compile(r"[\w.%+\-]+(?:@|%40)[\w\-]+(?:\.[\w\-]+)*\.[A-Za-z]{2,}"),
    # E.164-like phone numbers, with or without separators
    re.compile(r"\+\d[\d \-().]{6,}\d"),
    # webhook secrets and the client secrets we issue
    re.compile(r"whsec_[A-Za-z0-9+/=]+"),
    re.compile(r"\bccs_[A-Za-z0-9_\-]{16,}"),
]

# Attributes every LogRecord has; anything else was passed through `extra=`.
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_OWN_FIELDS = frozenset({"request_id", "redacted"})
_MAX_DEPTH = 8


def is_sensitive_key(key: str) -> bool:
    name = key.lower().replace("-", "_")
    if name in NOT_SENSITIVE:
        return False
    return name in SENSITIVE_KEYS or name.endswith(SENSITIVE_SUFFIXES)


# Values declared sensitive by the work in progress (see `sensitive_values`).
_declared: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "sensitive_values", default=()
)
# Shorter values would redact ordinary words and numbers everywhere.
_MIN_DECLARED_LENGTH = 4


@contextmanager
def sensitive_values(*values: str | None) -> Iterator[None]:
    """Redact these exact values from every log line written inside the block."""
    kept = tuple(v for v in values if isinstance(v, str) and len(v) >= _MIN_DECLARED_LENGTH)
    # Longest first, so a value containing another is replaced whole.
    merged = tuple(sorted(set(_declared.get() + kept), key=len, reverse=True))
    token = _declared.set(merged)
    try:
        yield
    finally:
        _declared.reset(token)


def redact_text(text: str) -> str:
    for value in _declared.get():
        text = text.replace(value, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def redact_value(key: str, value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of `value` with sensitive keys replaced and strings scanned."""
    if key and is_sensitive_key(key):
        return REDACTED
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if depth >= _MAX_DEPTH:
        return REDACTED
    if isinstance(value, Mapping):
        return {str(k): redact_value(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact_value("", v, depth + 1) for v in value]
    # Anything else is rendered by str(); a model instance or a request can quote data.
    return redact_text(str(value))


def _redact_args(args: Any) -> Any:
    """Format arguments with structured values redacted by key, their types kept for %d."""
    if isinstance(args, Mapping):
        return {k: _redact_arg(str(k), v) for k, v in args.items()}
    if isinstance(args, tuple):
        return tuple(_redact_arg("", v) for v in args)
    return args


def _redact_arg(key: str, value: Any) -> Any:
    if key and is_sensitive_key(key):
        return REDACTED
    if isinstance(value, (Mapping, list, tuple, set, frozenset)):
        return redact_value("", value)
    return value


def _message(record: logging.LogRecord) -> str:
    if record.args:
        try:
            return str(record.msg) % _redact_args(record.args)
        except (TypeError, ValueError, KeyError):
            # A broken format string: keep both parts visible (redacted) instead of raising.
            return f"{record.msg} {redact_value('', record.args)}"
    return str(record.msg)


def _exception_text(record: logging.LogRecord) -> str:
    if record.exc_info and record.exc_info[1] is not None:
        return logging.Formatter().formatException(record.exc_info)
    return record.exc_text or ""


def record_request_id(record: logging.LogRecord) -> str:
    """The request id a record belongs to: its own, the one of the request it is about
    (Django logs 4xx/5xx responses after the middleware has unbound the id, with the request
    attached), or the one bound to the work in progress."""
    own = getattr(record, "request_id", None)
    if own:
        return str(own)
    about = getattr(getattr(record, "request", None), "request_id", None)
    if about:
        return str(about)
    return get_request_id()


class RequestIdFilter(logging.Filter):
    """Stamp the request id onto the record (see `record_request_id`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = record_request_id(record)
        return True


class RefusedRequestFilter(logging.Filter):
    """For loggers whose records are a client's bad request, not a fault of ours (Django's
    `django.security.*`, e.g. a Host header outside ALLOWED_HOSTS): the line stays, as a
    warning, without the traceback Django attaches. Any client can send such a request, so a
    traceback per request would let it fill the log with what looks like our errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class RedactFilter(logging.Filter):
    """Rewrite the record so that nothing sensitive survives in it (see module docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "redacted", False):
            return True
        record.msg = redact_text(_message(record))
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and key not in _OWN_FIELDS:
                setattr(record, key, redact_value(key, value))
        exc_text = _exception_text(record)
        if exc_text:
            record.exc_text = redact_text(exc_text)
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        record.redacted = True
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, request_id, pid, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact_text(_message(record)),
            "request_id": record_request_id(record),
            "pid": os.getpid(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in _OWN_FIELDS and key not in entry:
                entry[key] = redact_value(key, value)
        exc_text = _exception_text(record)
        if exc_text:
            entry["exc"] = redact_text(exc_text)
        if record.stack_info:
            entry["stack"] = redact_text(record.stack_info)
        return json.dumps(entry, default=lambda o: redact_text(str(o)), ensure_ascii=False)


class RepeatLimitFilter(logging.Filter):
    """At most one warning per cause per `interval` seconds, across the processes of this
    machine, so an outage is reported, not shouted: a Redis outage made every request log
    "cache unavailable" (~1,800 lines in 20 s) and django-q2's sentinel and pusher log each
    failed connection every half second, in processes that die and are reborn.

    A record's cause is its `cause` extra (our code names it where an outage repeats), or,
    for the loggers in `loggers` (django-q2's), its message with digits masked (ports, pids
    and process names vary). Other records pass untouched. The last time a cause was let
    through is the modification time of a file named after it in `directory`, shared by
    every process (forked or reincarnated) with no shared memory; two processes racing may
    both let one through, which is still one line per process per interval."""

    _DIGITS = re.compile(r"[0-9a-f]{6,}|[0-9]+")

    def __init__(
        self,
        interval: float | str = 60.0,
        directory: str = "",
        loggers: tuple[str, ...] = ("django-q",),
    ) -> None:
        super().__init__()
        self.interval = float(interval)
        self.directory = directory or os.path.join(
            tempfile.gettempdir(), f"comcenter-log-repeats-{os.getuid()}"
        )
        self.loggers = loggers
        # Causes this process let through or saw suppressed, and when: no file look-up for
        # them until the interval is over.
        self._recent: dict[str, float] = {}

    def cause_of(self, record: logging.LogRecord) -> str | None:
        cause = getattr(record, "cause", None)
        if cause is not None:
            return f"{record.name}|{cause}"
        if record.levelno >= logging.WARNING and record.name.split(".")[0] in self.loggers:
            return f"{record.name}|{self._DIGITS.sub('#', str(record.msg))}"
        return None

    def filter(self, record: logging.LogRecord) -> bool:
        cause = self.cause_of(record)
        if cause is None or self.interval <= 0:
            return True
        now = time.time()
        if now - self._recent.get(cause, 0.0) < self.interval:
            return False
        marker = os.path.join(self.directory, hashlib.sha256(cause.encode()).hexdigest()[:24])
        try:
            last = os.stat(marker).st_mtime
        except OSError:
            last = 0.0
        if now - last < self.interval:
            self._recent[cause] = last
            return False
        self._recent[cause] = now
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            with open(marker, "a"):
                os.utime(marker, (now, now))
        except OSError:
            pass  # cannot remember: let the record through rather than lose it
        return True


def configure(config: dict[str, Any]) -> None:
    """Django's LOGGING_CONFIG: apply LOGGING, and send Python warnings (deprecations, a
    missing static directory) through it too, so they are JSON lines like everything else."""
    logging.config.dictConfig(config)
    logging.captureWarnings(True)
