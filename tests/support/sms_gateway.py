"""A real HTTP server on 127.0.0.1 with a free port speaking the part of Twilio's Messages
API that comcenter uses, with programmable answers.

    POST /2010-04-01/Accounts/{sid}/Messages.json   form To, From, Body -> 201 {"sid": ...}
    GET  /2010-04-01/Accounts/{sid}.json            -> 200 (the provider's health check)

Both check HTTP basic auth (401 with Twilio code 20003 otherwise). Like a gateway that
honours idempotency keys, a repeated `Idempotency-Key` gets the original sid back and is
not counted as a second delivery.
"""

from __future__ import annotations

import base64
import binascii
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs

from tests.support.loopback import LoopbackHandler, QuietServer

Kind = Literal["messages", "account", "other"]


@dataclass(frozen=True)
class GatewayRequest:
    kind: Kind
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]
    client_port: int


@dataclass(frozen=True)
class _Answer:
    status: int | None  # None: the normal behaviour, answered after `delay`
    body: Any
    headers: dict[str, str]
    delay: float
    on: Kind


@dataclass
class SmsGateway:
    account_sid: str = "AC" + "0123456789abcdef" * 2
    auth_token: str = "gateway-test-token"
    from_number: str = "+15005550006"
    requests: list[GatewayRequest] = field(default_factory=list)
    # Sids handed out per Idempotency-Key, i.e. messages the gateway took for delivery.
    delivered: dict[str, str] = field(default_factory=dict)
    bind_port: int = 0  # 0: any free port (tests); a fixed one for the README walk-through

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._answers: deque[_Answer] = deque()
        self._stopping = threading.Event()
        handler = type("GatewayHandler", (_Handler,), {"gateway": self})
        self._server = QuietServer(("127.0.0.1", self.bind_port), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment for a subprocess (a worker started by a test) to use this gateway."""
        return {
            "SMS_GATEWAY_URL": self.url,
            "SMS_ACCOUNT_SID": self.account_sid,
            "SMS_AUTH_TOKEN": self.auth_token,
            "SMS_FROM": self.from_number,
        }

    @property
    def sends(self) -> list[GatewayRequest]:
        """Requests to the Messages endpoint, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.kind == "messages"]

    def start(self) -> SmsGateway:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases handlers sleeping on a programmed delay
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def respond(
        self,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
        *,
        delay: float = 0.0,
        on: Kind = "messages",
    ) -> None:
        """Queue the answer to the next request of kind `on` (after `delay` seconds). `body`
        is JSON-encoded unless it is bytes; None means an empty body."""
        with self._lock:
            self._answers.append(_Answer(status, body, dict(headers or {}), delay, on))

    def answer_late(self, delay: float) -> None:
        """Take the next message normally (it counts as delivered) but answer only after
        `delay` seconds: the client times out on a send whose outcome is in fact success."""
        with self._lock:
            self._answers.append(_Answer(None, None, {}, delay, "messages"))

    def error_body(self, status: int, code: int, message: str = "error") -> dict[str, Any]:
        """A Twilio-shaped error body."""
        return {"code": code, "message": message, "more_info": "", "status": status}

    def _next_answer(self, kind: Kind) -> _Answer | None:
        with self._lock:
            for answer in self._answers:
                if answer.on == kind:
                    self._answers.remove(answer)
                    return answer
        return None

    def _record(self, request: GatewayRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _accept(self, key: str | None) -> str:
        with self._lock:
            if key and key in self.delivered:
                return self.delivered[key]
            sid = "SM" + uuid.uuid4().hex
            self.delivered[key or sid] = sid
            return sid


class _Handler(LoopbackHandler):
    gateway: SmsGateway

    def _handle(self) -> None:
        gateway = self.gateway
        raw = self.read_body()
        form = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        prefix = f"/2010-04-01/Accounts/{gateway.account_sid}"
        kind: Kind = "other"
        if self.command == "POST" and self.path == f"{prefix}/Messages.json":
            kind = "messages"
        elif self.command == "GET" and self.path == f"{prefix}.json":
            kind = "account"
        gateway._record(
            GatewayRequest(
                kind, self.command, self.path, dict(self.headers), form, self.client_address[1]
            )
        )

        if kind == "other":
            self.send_json(404, gateway.error_body(404, 20404, "not found"))
            return
        if not self._authorized():
            self.send_json(401, gateway.error_body(401, 20003, "Authenticate"))
            return
        answer = gateway._next_answer(kind)
        if answer is not None and answer.status is None:
            self._deliver(form, delay=answer.delay)
            return
        if answer is not None:
            if answer.delay:
                gateway._stopping.wait(answer.delay)
            self.send_json(answer.status, answer.body, answer.headers)
            return
        if kind == "account":
            self.send_json(200, {"sid": gateway.account_sid, "status": "active"})
            return
        self._deliver(form)

    def _deliver(self, form: dict[str, str], *, delay: float = 0.0) -> None:
        gateway = self.gateway
        missing = [name for name in ("To", "From", "Body") if not form.get(name)]
        if missing:
            code = {"To": 21604, "From": 21603, "Body": 21602}[missing[0]]
            self.send_json(400, gateway.error_body(400, code, f"{missing[0]} is required"))
            return
        sid = gateway._accept(self.headers.get("Idempotency-Key"))
        if delay:
            gateway._stopping.wait(delay)
        self.send_json(
            201, {"sid": sid, "status": "queued", "to": form["To"], "from": form["From"]}
        )

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        return decoded == f"{self.gateway.account_sid}:{self.gateway.auth_token}"


def main() -> None:
    """`python -m tests.support.sms_gateway [PORT]`: a local Twilio-shaped gateway for trying
    live SMS delivery by hand (the README's walk-through); prints what it accepts."""
    import sys
    import time

    gateway = SmsGateway(bind_port=int(sys.argv[1]) if len(sys.argv) > 1 else 8025).start()
    for name, value in gateway.env().items():
        print(f"{name}={value}")
    print("listening; Ctrl-C stops", flush=True)
    seen = 0
    try:
        while True:
            sends = gateway.sends
            for request in sends[seen:]:
                print(f"SMS accepted: To={request.form.get('To')} Body={request.form.get('Body')}")
            seen = len(sends)
            sys.stdout.flush()
            time.sleep(0.2)
    except KeyboardInterrupt:
        gateway.stop()


if __name__ == "__main__":
    main()
