"""Slow clients against the real web server (issue 16 #12): a client that stalls mid-body
takes no worker. Two such clients against a server of two worker processes, and
`/health/live` and a whole request from a third client are still answered at once; the
stalled request itself is answered as soon as its body is complete."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from comcenter.run import DEFAULT_WEB_SERVER, web_command
from identity.auth import issue_access_token
from identity.services import service_account_create
from tests.support.web import database_url, free_port, wait_live

ROOT = Path(__file__).resolve().parents[2]
# Below the 30 s a stalled client holds a sync worker (its timeout), with room for a loaded
# machine: what is asserted is that the answer does not wait for the stalled clients.
PROMPT = 20.0

pytestmark = pytest.mark.slow


@pytest.fixture
def token(transactional_db: Any, event_types: list[str]) -> str:
    """A valid bearer token, committed where the server process can see its account."""
    account, _ = service_account_create(name="slow-sally", scopes=["events:write"])
    return str(issue_access_token(account, ["events:write"]))


@pytest.fixture
def server(token: str, tmp_path: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = dict(os.environ)
    env.update(
        SECRET_KEY=secrets.token_urlsafe(50),
        # The test process signs the token; the server must check it with the same key.
        JWT_SIGNING_KEY=settings.SIMPLE_JWT["SIGNING_KEY"],
        DATABASE_URL=database_url(),
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        PYTHONUNBUFFERED="1",
    )
    command = web_command(
        server=DEFAULT_WEB_SERVER, target="comcenter", bind=f"127.0.0.1:{port}", workers=2
    )
    with (tmp_path / "server.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        try:
            wait_live(f"http://127.0.0.1:{port}", process, timeout=90)
            yield "127.0.0.1", port
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def _stalled_client(address: tuple[str, int], token: str, body: bytes, sent: int) -> socket.socket:
    """An authenticated client that sends the headers and the first `sent` bytes of `body`,
    then waits."""
    sock = socket.create_connection(address, timeout=PROMPT)
    head = (
        "POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    sock.sendall(head + body[:sent])
    return sock


def _read_status(sock: socket.socket) -> int:
    received = b""
    while b"\r\n" not in received:
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    return int(received.split(b" ", 2)[1])


def _event(key: str) -> bytes:
    return json.dumps(
        {
            "event_type": "deadline_soon",
            "idempotency_key": key,
            "recipient": {"id": "student-1", "email": "sally@example.org"},
            "data": {},
        }
    ).encode()


def test_it_answers_while_two_clients_stall_mid_body(server: tuple[str, int], token: str) -> None:
    address = server
    bodies = [_event("slow-1"), _event("slow-2")]
    stalled = [_stalled_client(address, token, body, sent=10) for body in bodies]
    try:
        time.sleep(0.5)  # both are in the server, waiting for the rest of their bodies
        live = f"http://{address[0]}:{address[1]}/health/live"
        with urllib.request.urlopen(live, timeout=PROMPT) as response:
            assert response.status == 200
        # A whole event from a third client is accepted meanwhile.
        whole = _stalled_client(address, token, _event("whole-1"), sent=len(_event("whole-1")))
        assert _read_status(whole) == 202
        whole.close()
        # Each stalled event is accepted once its body is complete.
        for sock, body in zip(stalled, bodies, strict=True):
            sock.sendall(body[10:])
            assert _read_status(sock) == 202
    finally:
        for sock in stalled:
            sock.close()


def test_it_accepts_an_event_sent_with_a_chunked_body(server: tuple[str, int], token: str) -> None:
    body = _event("chunked-1")
    sock = socket.create_connection(server, timeout=PROMPT)
    head = (
        "POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    half = len(body) // 2
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:]))
    sock.sendall(head + chunks + b"0\r\n\r\n")
    try:
        assert _read_status(sock) == 202
    finally:
        sock.close()
