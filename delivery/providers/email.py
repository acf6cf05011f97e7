"""Email through Django's email backend, as configured by EMAIL_URL (SMTP) or by
EMAIL_BACKEND + ANYMAIL (any django-anymail ESP).

Without EMAIL_URL the settings select Django's dummy backend, which would report success and
send nothing; this provider then reports itself not configured instead of pretending.
"""

from __future__ import annotations

import functools
import logging
import re
import smtplib
from email.utils import parseaddr

from anymail.exceptions import AnymailAPIError, AnymailError, AnymailRecipientsRefused
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.smtp import EmailBackend as SmtpBackend

from comcenter.lib.http import parse_retry_after
from delivery.models import Suppression
from delivery.providers.base import (
    CODE_CONNECTION,
    CODE_ERROR,
    CODE_INVALID,
    CODE_NOT_CONFIGURED,
    CODE_TIMEOUT,
    HealthResult,
    OutboundMessage,
    Provider,
    ProviderError,
    ProviderSession,
    SendResult,
)
from delivery.providers.mime import smtp_bytes

logger = logging.getLogger(__name__)

# Backends that accept a message and deliver nothing: selecting one means "not configured".
UNCONFIGURED_BACKENDS = frozenset({"django.core.mail.backends.dummy.EmailBackend"})

_ENHANCED_STATUS = re.compile(rb"^\s*([245]\.\d{1,3}\.\d{1,3})\b")
_MESSAGE_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._\-]")


@functools.lru_cache(maxsize=8)
def _message_id_domain(from_email: str) -> str:
    return parseaddr(from_email)[1].rpartition("@")[2] or "localhost"


class EmailProvider(Provider):
    name = "email"
    channel = "email"
    config_hint = "EMAIL_URL"

    # What an SMTP reply code means, for error messages (the server's own text can quote the
    # recipient address, so it is never passed on). Permanence follows RFC 5321: 5yz
    # permanent, 4yz transient.
    SMTP_REPLIES: dict[int, str] = {
        421: "service not available, closing channel",
        450: "mailbox unavailable (busy or greylisted)",
        451: "local error in processing",
        452: "insufficient system storage or too many recipients",
        454: "temporary authentication or TLS failure",
        500: "syntax error, command unrecognised",
        501: "syntax error in parameters",
        503: "bad sequence of commands",
        530: "authentication required",
        534: "authentication mechanism too weak",
        535: "authentication credentials invalid",
        550: "mailbox unavailable",
        551: "user not local",
        552: "exceeded storage allocation",
        553: "mailbox name not allowed",
        554: "transaction failed",
        556: "domain does not accept mail",
    }

    def is_configured(self) -> bool:
        return settings.EMAIL_BACKEND not in UNCONFIGURED_BACKENDS

    def session_open(self, *, timeout: float) -> ProviderSession:
        return EmailSession(self, timeout=min(timeout, settings.EMAIL_TIMEOUT))

    def health_check(self, *, timeout: float) -> HealthResult:
        backend = get_connection(fail_silently=False, timeout=timeout)
        if not isinstance(backend, SmtpBackend):
            # ESP backends have no cheap side-effect-free probe; their failures show up as
            # transient send errors instead.
            return HealthResult(ok=True, detail=f"{type(backend).__module__} configured")
        where = f"smtp {backend.host}:{backend.port}"
        try:
            backend.open()
            if backend.connection is None:  # open() failed silently
                raise OSError("no SMTP connection")
            code, _reply = backend.connection.noop()
        except Exception as exc:  # every way a probe fails is "unhealthy"
            return HealthResult(ok=False, detail=f"{where}: {self.classify(exc).message}")
        finally:
            _quiet_close(backend)
        return HealthResult(ok=code == 250, detail=f"{where}: NOOP {code}")

    def message_id(self, message_uid: str) -> str:
        """The Message-ID of every attempt of a message: the same uid gives the same id, so
        a resend after an unknown outcome can be recognised as a duplicate downstream."""
        local = _MESSAGE_ID_UNSAFE.sub("-", message_uid)
        return f"<{local}@{_message_id_domain(settings.DEFAULT_FROM_EMAIL)}>"

    def email_build(self, message: OutboundMessage, message_id: str) -> EmailMultiAlternatives:
        email = EmailMultiAlternatives(
            subject=message.subject,
            body=message.text,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[message.to],
            headers={"Message-ID": message_id},
        )
        if message.html:
            email.attach_alternative(message.html, "text/html")
        return email

    def classify(self, exc: BaseException) -> ProviderError:
        """Any exception a backend raised, as a ProviderError that does not quote it (its
        text can hold the address or the payload)."""
        kind = type(exc).__name__
        # Anymail's API errors are also requests' HTTPError, an OSError: test them first.
        if isinstance(exc, AnymailRecipientsRefused):
            return ProviderError(
                "ESP refused the recipient", permanent=True, response_code="rejected"
            )
        if isinstance(exc, AnymailAPIError):
            return self._esp_error(exc)
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            # One recipient per message, so one reply.
            code, reply = next(iter(exc.recipients.values()), (-1, b""))
            return self._smtp_reply_error(code, reply, stage="RCPT")
        if isinstance(exc, smtplib.SMTPSenderRefused):
            return self._smtp_reply_error(exc.smtp_code, exc.smtp_error, stage="MAIL")
        if isinstance(exc, smtplib.SMTPDataError):
            return self._smtp_reply_error(exc.smtp_code, exc.smtp_error, stage="DATA")
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return self._smtp_reply_error(exc.smtp_code, exc.smtp_error, stage="AUTH")
        if isinstance(exc, smtplib.SMTPConnectError | smtplib.SMTPHeloError):
            # A refusal at greeting is about the server, not this message.
            return ProviderError(
                f"SMTP {exc.smtp_code} at connect: server refused the session",
                permanent=False,
                response_code=str(exc.smtp_code),
            )
        if isinstance(exc, smtplib.SMTPResponseException):
            return self._smtp_reply_error(exc.smtp_code, exc.smtp_error, stage="command")
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return ProviderError(
                "SMTP server lacks a required extension (STARTTLS, AUTH or SMTPUTF8)",
                permanent=True,
                response_code=CODE_ERROR,
            )
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            # smtplib turns a socket timeout while waiting for a reply into a disconnect.
            if "timed out" in str(exc):
                return ProviderError(
                    "SMTP reply timed out", permanent=False, response_code=CODE_TIMEOUT
                )
            return ProviderError(
                "SMTP server disconnected", permanent=False, response_code=CODE_CONNECTION
            )
        if isinstance(exc, TimeoutError):
            # A timeout after DATA was written is an unknown outcome: transient, and the
            # deterministic Message-ID lets the receiver drop the duplicate.
            return ProviderError(
                "email send timed out", permanent=False, response_code=CODE_TIMEOUT
            )
        if isinstance(exc, OSError):
            return ProviderError(
                f"email connection failed ({kind})", permanent=False, response_code=CODE_CONNECTION
            )
        if isinstance(exc, ImproperlyConfigured):
            return ProviderError(
                f"email backend misconfigured ({kind})",
                permanent=True,
                response_code=CODE_NOT_CONFIGURED,
            )
        if isinstance(exc, ValueError | TypeError):
            # Django's BadHeaderError, an unparseable address, Anymail's invalid address or
            # unsupported feature: the message itself can never be sent as is.
            return ProviderError(
                f"message rejected before sending ({kind})",
                permanent=True,
                response_code=CODE_INVALID,
            )
        if isinstance(exc, AnymailError):
            return ProviderError(f"ESP error ({kind})", permanent=False, response_code=CODE_ERROR)
        return ProviderError(
            f"unexpected email error ({kind})", permanent=False, response_code=CODE_ERROR
        )

    def _smtp_reply_error(self, code: int, reply: bytes | str, *, stage: str) -> ProviderError:
        raw = reply.encode("utf-8", "replace") if isinstance(reply, str) else reply
        enhanced = _ENHANCED_STATUS.match(raw or b"")
        meaning = self.SMTP_REPLIES.get(code, "unexpected reply")
        detail = f"SMTP {code} at {stage}: {meaning}"
        status = enhanced.group(1).decode() if enhanced else ""
        if status:
            detail += f" ({status})"
        # 5.1.x (RFC 3463: bad mailbox, bad domain, bad syntax ...) says the address itself
        # does not exist, not that this message failed: never try it again.
        bad_address = code // 100 == 5 and status.startswith("5.1.")
        return ProviderError(
            detail,
            permanent=500 <= code < 600,
            response_code=str(code),
            suppress=Suppression.Reason.BOUNCE if bad_address else "",
        )

    def _esp_error(self, exc: AnymailAPIError) -> ProviderError:
        status = exc.status_code
        esp = getattr(exc, "esp_name", None) or "ESP"
        if status is None:
            return ProviderError(
                f"{esp} API unreachable", permanent=False, response_code=CODE_CONNECTION
            )
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None) or {}
        return ProviderError(
            f"{esp} API answered {status}",
            permanent=not (status == 429 or status >= 500),
            retry_after=parse_retry_after(headers.get("Retry-After")),
            response_code=str(status),
        )


def _quiet_close(backend: BaseEmailBackend) -> None:
    # Runs on error paths: a QUIT to a dead server must not mask the original failure.
    try:
        backend.close()
    except Exception:
        logger.debug("email backend close failed", exc_info=True)


def _connection_survives(exc: BaseException) -> bool:
    """True when smtplib reset the transaction and kept the connection: a 4xx/5xx reply to
    MAIL, RCPT or DATA other than 421 (after which the server hangs up)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code != 421 for code, _reply in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPSenderRefused | smtplib.SMTPDataError):
        return exc.smtp_code != 421
    return False


class EmailSession(ProviderSession):
    """One backend connection (one SMTP session) reused for every send of a batch. It
    connects at the first send and reconnects after any failure that may have broken it."""

    provider: EmailProvider

    def __init__(self, provider: EmailProvider, *, timeout: float) -> None:
        super().__init__(provider)
        try:
            self._backend = get_connection(fail_silently=False, timeout=timeout)
        except Exception as exc:  # a bad EMAIL_BACKEND path, an ESP missing its API key ...
            raise ProviderError(
                f"email backend cannot be built ({type(exc).__name__}): check EMAIL_URL, "
                "EMAIL_BACKEND and ANYMAIL",
                permanent=True,
                response_code=CODE_NOT_CONFIGURED,
            ) from None
        self._connected = False
        self._is_smtp = isinstance(self._backend, SmtpBackend)
        # Django's own SMTP backend only: a subclass may change what it sends (a signing
        # backend overriding _send), which bytes built without it would skip.
        self._builds_bytes = type(self._backend) is SmtpBackend

    def deliver(self, message: OutboundMessage) -> SendResult:
        if not self._connected:
            # Opened explicitly: send_messages() would otherwise open and close a
            # connection per call.
            self._backend.open()
            self._connected = True
        message_id = self.provider.message_id(message.message_uid)
        if self._builds_bytes and self._smtp_send(message, message_id):
            return SendResult(provider_message_id=message_id, response_code="250")
        email = self.provider.email_build(message, message_id)
        if self._backend.send_messages([email]) != 1:
            raise ProviderError(
                "email backend accepted no message", permanent=False, response_code=CODE_ERROR
            )
        return self._result(email, message_id)

    def _smtp_send(self, message: OutboundMessage, message_id: str) -> bool:
        """Send the bytes Django's SMTP backend would send, built by delivery/providers/
        mime.py without Django's email objects; False (nothing sent) for a message it does
        not build, which then goes through Django."""
        assert isinstance(self._backend, SmtpBackend)
        built = smtp_bytes(
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=message.to,
            subject=message.subject,
            text=message.text,
            html=message.html,
            message_id=message_id,
        )
        connection = self._backend.connection
        if built is None or connection is None:
            return False
        sender, data = built
        # As the backend's _send: smtplib raises on anything but 250 after DATA.
        connection.sendmail(sender, [message.to], data)
        return True

    def after_failure(self, exc: BaseException) -> None:
        if not _connection_survives(exc):
            self.close()

    def _result(self, email: EmailMultiAlternatives, message_id: str) -> SendResult:
        if self._is_smtp:
            # smtplib raises on anything but 250 after DATA.
            return SendResult(provider_message_id=message_id, response_code="250")
        status = getattr(email, "anymail_status", None)
        if status is None:
            return SendResult(provider_message_id=message_id, response_code="accepted")
        esp_id = status.message_id
        states = ",".join(sorted(status.status or ())) or "accepted"
        return SendResult(
            provider_message_id=esp_id if isinstance(esp_id, str) and esp_id else message_id,
            response_code=states,
        )

    def close(self) -> None:
        if self._connected:
            self._connected = False
            _quiet_close(self._backend)
