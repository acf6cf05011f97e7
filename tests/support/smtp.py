"""A real SMTP server (aiosmtpd) on 127.0.0.1 with a free port, which records what it
accepts and answers programmed replies for chosen recipients."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

Stage = Literal["rcpt", "data"]


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    message: EmailMessage


def message_id_of(envelope: Envelope) -> str:
    """The Message-ID header of a received message, as raw bytes arrived ("" if none)."""
    for line in (envelope.original_content or b"").split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode()
    return ""


class _FreePortController(Controller):
    """aiosmtpd's Controller binds the port it is given; with port 0 the OS picks a free one
    and we read it back before the controller's own start-up probe connects to it. It also
    counts SMTP connections (aiosmtpd builds one SMTP protocol object per connection)."""

    connections = 0

    def factory(self) -> SMTP:
        self.connections += 1
        return super().factory()

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class _Handler:
    def __init__(self, owner: SmtpServer) -> None:
        self.owner = owner

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self.owner.programmed_reply(address, "rcpt")
        if reply:
            return _answer(server, reply)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        for address in envelope.rcpt_tos:
            reply = self.owner.programmed_reply(address, "data")
            if reply:
                return _answer(server, reply)
        self.owner.record(envelope)
        return "250 Message accepted for delivery"


def _answer(server: SMTP, reply: str) -> str:
    if reply.startswith("421"):
        # RFC 5321: a 421 closes the channel. Closing after the reply is flushed makes the
        # server behave like a real one instead of leaving the session open.
        transport = server.transport
        if transport is not None:
            asyncio.get_running_loop().call_soon(transport.close)
    return reply


# Reply texts quote the address like real servers do, so tests can check it never leaks.
_DEFAULT_TEXTS = {
    421: "4.3.2 Service not available, closing channel",
    450: "4.2.1 Mailbox busy, try again later",
    451: "4.3.0 Local error in processing",
    452: "4.5.3 Too many recipients",
    550: "5.1.1 <{address}>: Recipient address rejected: User unknown",
    552: "5.2.2 Mailbox full",
    553: "5.1.3 <{address}>: Mailbox name not allowed",
    554: "5.7.1 <{address}>: Message rejected",
}


class SmtpServer:
    """`messages` holds every accepted mail in arrival order; `reply_for()` makes the server
    refuse a recipient at RCPT or after DATA with the given code."""

    def __init__(self) -> None:
        self.messages: list[ReceivedMail] = []
        self._replies: dict[tuple[str, Stage], str] = {}
        self._lock = threading.Lock()
        self._controller = _FreePortController(_Handler(self), hostname="127.0.0.1", port=0)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self._controller.port)

    @property
    def email_url(self) -> str:
        """EMAIL_URL for a subprocess (a worker started by a test) to reach this server."""
        return f"smtp://{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        """SMTP connections opened by clients since start()."""
        return self._controller.connections

    def start(self) -> SmtpServer:
        self._controller.start()
        # Forget the controller's own start-up probe.
        self._controller.connections = 0
        return self

    def stop(self) -> None:
        """Stop listening; safe to call twice (a test may stop the server to simulate an
        outage before the fixture's own teardown)."""
        if self._controller._thread is not None:
            self._controller.stop()

    def reply_for(
        self, address: str, code: int, *, at: Stage = "rcpt", text: str | None = None
    ) -> None:
        template = text if text is not None else _DEFAULT_TEXTS.get(code, "Programmed reply")
        with self._lock:
            self._replies[(address.lower(), at)] = f"{code} {template.format(address=address)}"

    def clear_reply(self, address: str) -> None:
        with self._lock:
            for stage in ("rcpt", "data"):
                self._replies.pop((address.lower(), stage), None)

    def programmed_reply(self, address: str, stage: Stage) -> str | None:
        with self._lock:
            return self._replies.get((address.lower(), stage))

    def record(self, envelope: Envelope) -> None:
        raw = envelope.original_content or b""
        parsed: Any = email.message_from_bytes(raw, policy=email.policy.default)
        mail = ReceivedMail(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            data=raw,
            message=parsed,
        )
        with self._lock:
            self.messages.append(mail)

    def messages_to(self, address: str) -> list[ReceivedMail]:
        with self._lock:
            return [m for m in self.messages if address in m.rcpt_tos]
