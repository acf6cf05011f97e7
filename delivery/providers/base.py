"""The one contract every delivery provider follows.

The dispatcher knows only these types: it asks the registry for the provider of a channel,
opens one session per batch (one SMTP connection, one keep-alive HTTP session), sends each
message through it and reads either a `SendResult` or a `ProviderError`. The session's `send`
is a template method (as django-anymail's base backend runs one fixed pipeline): the base
checks, the vendor delivers, the vendor's table classifies a failure as permanent (the
message goes to the dead-letter queue) or transient (retried with backoff), the base logs it
once. `http_error` is the classification every HTTP vendor shares (SMS gateway, helpdesk).

Nothing here may put an address, a phone number or a message body into an exception message
or a log line: those travel up into attempts, lineage rows and logs.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from comcenter.lib import http
from comcenter.lib.http import HttpError

logger = logging.getLogger(__name__)

# Outcomes that are not a vendor reply get a symbolic response code, so attempts and metrics
# can count them next to "550" or "429".
CODE_NOT_CONFIGURED = "not_configured"
CODE_TIMEOUT = "timeout"
CODE_CONNECTION = "connection_error"
CODE_INVALID = "invalid_message"
CODE_ERROR = "error"


@dataclass(frozen=True)
class OutboundMessage:
    """A rendered message ready to leave. `message_uid` is stable across attempts: providers
    derive the email Message-ID and the gateway idempotency key from it, so a retry after an
    unknown outcome can be deduplicated by the receiver."""

    message_uid: str
    channel: str
    to: str
    subject: str
    text: str
    html: str
    request_id: str

    def __repr__(self) -> str:
        # The default repr would put the address and the body into tracebacks and debug logs.
        return f"OutboundMessage(message_uid={self.message_uid!r}, channel={self.channel!r})"


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    response_code: str


@dataclass(frozen=True)
class HealthResult:
    ok: bool
    detail: str


class ProviderError(Exception):
    """A send (or session) failed. `permanent=True` means retrying cannot help (invalid
    address, rejected credentials, 4xx); `permanent=False` covers everything that may succeed
    later, including unknown outcomes such as a timeout after the request was written.
    `retry_after` is the provider's own hint in seconds, when it gave one. `suppress` is a
    `Suppression.Reason` when the failure says the address itself is gone (SMTP 5.1.x, an
    SMS opt-out): the batch then suppresses it, so the next message to it is not tried."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        retry_after: float | None = None,
        response_code: str = "",
        suppress: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after
        self.response_code = response_code
        self.suppress = suppress

    def __repr__(self) -> str:
        return (
            f"ProviderError({self.message!r}, permanent={self.permanent}, "
            f"retry_after={self.retry_after}, response_code={self.response_code!r})"
        )


class ProviderSession:
    """One open channel to a provider, reused for a batch of sends. Not thread-safe: a worker
    opens its own. Use it as a context manager so the connection is closed on every path.

    `send` is the one send pipeline, the same for every vendor: check -> deliver -> classify
    -> log once. A subclass fills in `deliver` (and may add to `check` or `after_failure`);
    the vendor's error table lives in its provider's `classify`. No subclass logs a failure
    or raises anything but `ProviderError` out of `send`."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    def send(self, message: OutboundMessage) -> SendResult:
        """Deliver one message and return the provider's id and reply code, or raise
        `ProviderError` (permanent or transient), logged once without address or body."""
        try:
            self.check(message)
            return self.deliver(message)
        except ProviderError as verdict:
            self._log_failure(message, verdict)
            raise
        except Exception as exc:
            error = self._classified(message, exc)
            self.after_failure(exc)
            self._log_failure(message, error)
            # `from None`: the cause's text can quote the address or the payload.
            raise error from None

    def _classified(self, message: OutboundMessage, exc: Exception) -> ProviderError:
        error = self.provider.classify(exc)
        if error is not None:
            return error
        # Not a failure the vendor's table knows: a bug or an unforeseen reply. Transient, so
        # the message is not lost; the traceback is for the operator.
        logger.exception(
            "provider raised an unexpected error",
            extra={"provider": self.provider.name, "message_uid": message.message_uid},
        )
        return ProviderError(
            f"unexpected {type(exc).__name__} from the provider",
            permanent=False,
            response_code=CODE_ERROR,
        )

    def check(self, message: OutboundMessage) -> None:
        """Refuse a message that can never be sent as is, before any network call. A
        subclass that adds checks calls this one first and raises `ProviderError`."""
        if not message.to:
            raise ProviderError(
                "message has no recipient", permanent=True, response_code=CODE_INVALID
            )

    def deliver(self, message: OutboundMessage) -> SendResult:
        """A subclass must hand the message to the vendor and return its id and reply code.
        It lets the client's exceptions out (the provider's `classify` maps them) or raises
        a `ProviderError` itself for a reply it judged; it must leave the session usable for
        the next message (reconnecting lazily if the failure broke the connection)."""
        raise NotImplementedError

    def after_failure(self, exc: BaseException) -> None:
        """Runs after a client exception, before the error is raised: a subclass drops a
        connection that the failure may have broken. Must not raise."""

    def close(self) -> None:
        """Release the connection. A subclass must make this idempotent and must not raise:
        it runs on error paths."""

    def _log_failure(self, message: OutboundMessage, error: ProviderError) -> None:
        logger.warning(
            f"{self.provider.channel} send failed",
            extra={
                "request_id": message.request_id,
                "message_uid": message.message_uid,
                "provider": self.provider.name,
                "response_code": error.response_code,
                "permanent": error.permanent,
                "error": error.message,
            },
        )

    def __enter__(self) -> ProviderSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Provider:
    """A delivery channel's vendor. Instances are shared by every thread of a process (the
    registry caches them), so a subclass keeps no per-send state on `self`; settings are read
    at call time so tests and reconfiguration take effect."""

    name: str = ""
    channel: str = ""
    # The environment variable an operator sets to configure this provider, for messages.
    config_hint: str = ""
    # Health probes must be cheap: they run from /health and from the canary.
    health_timeout: float = 2.0
    health_cache_seconds: float = 5.0

    def __init__(self) -> None:
        self._health_lock = threading.Lock()
        self._health_cached: tuple[float, HealthResult] | None = None

    def is_configured(self) -> bool:
        """A subclass must say whether its settings allow a real send. An unconfigured
        provider never pretends to send."""
        raise NotImplementedError

    def session_open(self, *, timeout: float) -> ProviderSession:
        """A subclass must return a new session whose network calls each give up after
        `timeout` seconds. Called only when `is_configured()` is true; should not connect
        eagerly, so that a connection failure surfaces as a `ProviderError` from `send()`."""
        raise NotImplementedError

    def health_check(self, *, timeout: float) -> HealthResult:
        """A subclass must probe the provider cheaply (connect, no-op) within `timeout`
        seconds. It may raise; `health()` turns any exception into ok=False."""
        raise NotImplementedError

    def http_health(self, *, label: str, url: str, timeout: float, **kwargs: Any) -> HealthResult:
        """The health probe of an HTTP provider: a GET of `url` that reads and writes nothing
        (it checks reachability and credentials), its failure worded by `classify`."""
        host = urlsplit(url).netloc
        try:
            response = http.request("GET", url, timeout=timeout, **kwargs)
        except http.HttpError as exc:
            error = self.classify(exc)
            assert error is not None  # an HttpError always classifies
            return HealthResult(ok=False, detail=f"{label} {host}: {error.message}")
        return HealthResult(ok=True, detail=f"{label} {host}: {response.status}")

    def classify(self, exc: BaseException) -> ProviderError | None:
        """A subclass maps an exception its client raised (a vendor reply, a timeout, a
        refused connection) to a `ProviderError`, its vendor codes looked up in a class-level
        table; None for one it does not know (the session then counts it transient). The
        error's text must not quote the exception: that can hold the address or payload."""
        return None

    def not_configured_detail(self) -> str:
        return f"{self.channel} provider {self.name} not configured: set {self.config_hint}"

    def open(self, *, timeout: float) -> ProviderSession:
        if not self.is_configured():
            raise ProviderError(
                self.not_configured_detail(),
                permanent=True,
                response_code=CODE_NOT_CONFIGURED,
            )
        return self.session_open(timeout=timeout)

    def health(self) -> HealthResult:
        """The provider's health, cached for a few seconds so a busy /health endpoint does not
        hammer the vendor. "Not configured" is ok=False; the caller decides whether an
        unconfigured provider counts as a failure."""
        if not self.is_configured():
            return HealthResult(ok=False, detail=self.not_configured_detail())
        now = time.monotonic()
        with self._health_lock:
            cached = self._health_cached
            if cached is not None and now < cached[0]:
                return cached[1]
            try:
                result = self.health_check(timeout=self.health_timeout)
            except Exception as exc:  # a probe failing in any way is "unhealthy", not a crash
                result = HealthResult(ok=False, detail=f"{self.name}: {type(exc).__name__}")
            self._health_cached = (time.monotonic() + self.health_cache_seconds, result)
            return result


def http_error(
    exc: HttpError, *, vendor: str, meaning: str = "", code: str = "", suppress: str = ""
) -> ProviderError:
    """An HTTP vendor's failure: no answer is transient (a timeout may be an unknown outcome,
    retried under the same Idempotency-Key); 429 and 5xx are transient with the vendor's
    Retry-After; every other status is permanent. `code` is the vendor's own error code and
    `meaning` its entry in the vendor's table; `vendor` names it in the text ("gateway")."""
    if exc.status is None:
        if exc.timed_out:
            return ProviderError(f"{vendor} timed out", permanent=False, response_code=CODE_TIMEOUT)
        return ProviderError(
            f"{vendor} unreachable", permanent=False, response_code=CODE_CONNECTION
        )
    status = exc.status
    return ProviderError(
        f"{vendor} answered {status}" + (f": {meaning}" if meaning else ""),
        permanent=not (status == 429 or status >= 500),
        retry_after=exc.retry_after,
        response_code=f"{status}:{code}" if code else str(status),
        suppress=suppress,
    )
