"""The single wrapper every outbound HTTP call goes through (SMS gateway, JWKS, helpdesk).

Why one wrapper: every call then has a User-Agent (some identity providers reject clients
without one), a deadline, no redirects off the original host (a redirect must not carry our
credentials or send our request somewhere else), a bounded response size, and failures that
arrive as one exception type whose message never holds a URL path, a query string, a
credential or a body. Callers classify `HttpError` by `status` and `timed_out`.

This module imports no app of ours (comcenter/lib is below every app).
"""

from __future__ import annotations

import json as jsonlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings
from urllib3.exceptions import ReadTimeoutError

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 1024 * 1024
# Kept on HttpError so callers can read a vendor error code; larger bodies are truncated.
ERROR_BODY_BYTES = 64 * 1024
MAX_REDIRECTS = 3
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class HttpError(Exception):
    """An outbound call failed: no answer (`status` None; `timed_out` tells a deadline from a
    refused/reset connection) or a status outside 2xx/304 (`status`, `body`, and the server's
    `retry_after` hint in seconds when it sent one)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        timed_out: bool = False,
        body: bytes = b"",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.timed_out = timed_out
        self.body = body


@dataclass(frozen=True)
class HttpResponse:
    status: int
    # requests' case-insensitive mapping, so `headers["retry-after"]` works.
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)

    def json(self) -> Any:
        """The body as JSON; HttpError when it is not JSON (a misbehaving server is a
        failure of the call, not a crash of the caller)."""
        try:
            return jsonlib.loads(self.body)
        except ValueError:
            raise HttpError("response is not JSON", status=self.status) from None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def user_agent() -> str:
    return f"comcenter/{getattr(settings, 'APP_VERSION', '0')}"


def session_new() -> requests.Session:
    """A keep-alive session for a batch of calls to one host; close it when done."""
    session = requests.Session()
    session.headers["User-Agent"] = user_agent()
    return session


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP-date (RFC 9110
    §10.2.3). None when absent or unreadable; a date in the past means 0."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # NaN and infinities parse as floats but are no delay anyone can honour.
        return seconds if 0 <= seconds < float("inf") else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is GMT by definition
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or ""), parts.port


def _is_timeout(exc: requests.RequestException) -> bool:
    if isinstance(exc, requests.Timeout):
        return True
    # requests reports a read timeout during the body as ConnectionError(ReadTimeoutError).
    return any(isinstance(arg, ReadTimeoutError) for arg in exc.args)


def _read_body(response: requests.Response, *, deadline: float, max_bytes: int, host: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=16384):
        size += len(chunk)
        if size > max_bytes:
            raise HttpError(f"response from {host} larger than {max_bytes} bytes")
        if time.monotonic() > deadline:
            raise HttpError(f"response from {host} timed out", timed_out=True)
        chunks.append(chunk)
    return b"".join(chunks)


def request(
    method: str,
    url: str,
    *,
    timeout: float,
    session: requests.Session | None = None,
    headers: Mapping[str, str] | None = None,
    data: Mapping[str, str] | bytes | None = None,
    auth: tuple[str, str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> HttpResponse:
    """One HTTP call with a deadline of `timeout` seconds for connecting, waiting and
    reading the body (a server trickling response headers byte by byte can stretch the wait
    for headers to `timeout` per byte; the body is cut at the deadline).

    Redirects are followed only for GET/HEAD, only to the same scheme, host and port, at
    most MAX_REDIRECTS times. Returns 2xx and 304 responses; raises HttpError otherwise."""
    method = method.upper()
    host = urlsplit(url).hostname or "?"
    merged = {"User-Agent": user_agent(), **(headers or {})}
    own_session = session is None
    http = session_new() if session is None else session
    started = time.monotonic()
    deadline = started + timeout
    try:
        for _hop in range(MAX_REDIRECTS + 1):
            remaining = max(0.001, deadline - time.monotonic())
            try:
                response = http.request(
                    method,
                    url,
                    headers=merged,
                    data=data,
                    auth=auth,
                    timeout=(remaining, remaining),
                    allow_redirects=False,
                    stream=True,
                )
            except requests.RequestException as exc:
                if _is_timeout(exc):
                    raise HttpError(f"{method} {host} timed out", timed_out=True) from None
                raise HttpError(f"{method} {host} failed: {type(exc).__name__}") from None
            try:
                body = _read_body(response, deadline=deadline, max_bytes=max_bytes, host=host)
            except requests.RequestException as exc:
                timed_out = _is_timeout(exc)
                what = "timed out" if timed_out else f"failed: {type(exc).__name__}"
                raise HttpError(f"{method} {host} {what}", timed_out=timed_out) from None
            finally:
                response.close()
            status = response.status_code
            logger.debug(
                "http call",
                extra={
                    "method": method,
                    "host": host,
                    "status": status,
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                },
            )
            if status in _REDIRECT_STATUSES and method in {"GET", "HEAD"}:
                target = urljoin(url, response.headers.get("Location", ""))
                if _origin(target) != _origin(url):
                    raise HttpError(f"{method} {host} redirected off-host", status=status)
                url = target
                continue
            if 200 <= status < 300 or status == 304:
                return HttpResponse(status=status, headers=response.headers, body=body)
            raise HttpError(
                f"{method} {host} answered {status}",
                status=status,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                body=body[:ERROR_BODY_BYTES],
            )
        raise HttpError(f"{method} {host} redirected too often")
    finally:
        if own_session:
            http.close()
