"""A real HTTP server on 127.0.0.1 speaking the part of Richpanel's API that comcenter uses,
with programmable answers (SPEC §10):

    PUT  /v1/tickets/{id}/add-tags   {"tags": [...]}                 -> 200
    PUT  /v1/tickets/{id}            {"ticket": {"team": "..."}}     -> 200
    POST /v1/tickets/{id}/comments   {"comment": {"body", ...}}      -> 200
    GET  /v1/tickets?per_page=1                                      -> 200 (health check)

Every request needs `x-richpanel-key` (401 otherwise) and every write an `Idempotency-Key`
(400 otherwise). Like a helpdesk that honours the keys, a repeated key is answered as before
and changes nothing. The state of each ticket (tags, team, public comments) is kept so tests
assert what a support agent would see.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tests.support.loopback import LoopbackHandler, QuietServer

API_KEY = "helpdesk-test-key"
_TICKET = re.compile(r"^/v1/tickets/([^/?]+)(/add-tags|/comments)?$")


@dataclass(frozen=True)
class HelpdeskRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float


@dataclass
class TicketState:
    tags: list[str] = field(default_factory=list)
    team: str = ""
    comments: list[str] = field(default_factory=list)


class Helpdesk:
    def __init__(self, *, port: int = 0, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.requests: list[HelpdeskRequest] = []
        self.tickets: dict[str, TicketState] = {}
        self._seen_keys: set[str] = set()
        self._answers: deque[tuple[int, dict[str, str]]] = deque()
        self._lock = threading.Lock()
        handler = type("HelpdeskHandler", (_Handler,), {"helpdesk": self})
        self._server = QuietServer(("127.0.0.1", port), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def env(self) -> dict[str, str]:
        return {"HELPDESK_URL": self.url, "HELPDESK_API_KEY": self.api_key}

    def start(self) -> Helpdesk:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def respond(self, status: int, headers: dict[str, str] | None = None) -> None:
        """Answer the next write with `status` (and headers) instead of applying it."""
        with self._lock:
            self._answers.append((status, dict(headers or {})))

    def ticket(self, ticket_id: str) -> TicketState:
        with self._lock:
            return self.tickets.get(ticket_id, TicketState())

    @property
    def writes(self) -> list[HelpdeskRequest]:
        with self._lock:
            return [r for r in self.requests if r.method in ("PUT", "POST")]

    def _apply(self, ticket_id: str, part: str, body: Any, key: str) -> None:
        with self._lock:
            if key in self._seen_keys:
                return
            self._seen_keys.add(key)
            state = self.tickets.setdefault(ticket_id, TicketState())
            if part == "/add-tags":
                state.tags += [t for t in body["tags"] if t not in state.tags]
            elif part == "/comments":
                state.comments.append(body["comment"]["body"])
            else:
                state.team = body["ticket"]["team"]


class _Handler(LoopbackHandler):
    helpdesk: Helpdesk

    def do_PUT(self) -> None:
        self._handle()

    def _handle(self) -> None:
        desk = self.helpdesk
        raw = self.read_body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with desk._lock:
            desk.requests.append(
                HelpdeskRequest(self.command, self.path, dict(self.headers), body, time.monotonic())
            )
        if self.headers.get("x-richpanel-key") != desk.api_key:
            self.send_json(401, {"error": "invalid api key"})
            return
        if self.command == "GET" and self.path.startswith("/v1/tickets"):
            self.send_json(200, {"tickets": []})
            return
        found = _TICKET.match(self.path)
        part = (found.group(2) or "") if found else ""
        if not found or (self.command == "POST") != (part == "/comments"):
            self.send_json(404, {"error": "not found"})
            return
        key = self.headers.get("Idempotency-Key", "")
        if not key:
            self.send_json(400, {"error": "Idempotency-Key required"})
            return
        with desk._lock:
            answer = desk._answers.popleft() if desk._answers else None
        if answer is not None:
            self.send_json(answer[0], {"error": "programmed answer"}, answer[1])
            return
        if not _valid(part, body):
            self.send_json(422, {"error": "invalid body"})
            return
        desk._apply(found.group(1), part, body, key)
        self.send_json(200, {"ticket": {"id": found.group(1)}})


def _valid(part: str, body: Any) -> bool:
    if not isinstance(body, dict):
        return False
    if part == "/add-tags":
        return isinstance(body.get("tags"), list)
    if part == "/comments":
        comment = body.get("comment")
        return isinstance(comment, dict) and isinstance(comment.get("body"), str)
    ticket = body.get("ticket")
    return isinstance(ticket, dict) and isinstance(ticket.get("team"), str)


def main() -> None:
    """`python -m tests.support.helpdesk [PORT]`: a local Richpanel-shaped helpdesk for the
    README's walk-through; prints its settings, then every write it applies."""
    import sys

    desk = Helpdesk(port=int(sys.argv[1]) if len(sys.argv) > 1 else 8030).start()
    for name, value in desk.env().items():
        print(f"{name}={value}")
    print("listening; Ctrl-C stops", flush=True)
    seen = 0
    try:
        while True:
            writes = desk.writes
            for request in writes[seen:]:
                print(f"{request.method} {request.path} {json.dumps(request.body)}", flush=True)
            seen = len(writes)
            time.sleep(0.2)
    except KeyboardInterrupt:
        desk.stop()


if __name__ == "__main__":
    main()
