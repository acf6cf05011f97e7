"""A Django WSGI application under granian's RSGI interface: each request's body is read in
full on the event loop, then the WSGI handler runs on the process's one application thread.

Why: a sync WSGI worker (gunicorn's, or granian's WSGI interface, which streams `wsgi.input`
from the socket into the application thread) is held for as long as a client takes to send
its body; two clients that stall mid-body held both workers of a small node for the whole
timeout (issue 16 #12), and `/health/live` with them. Here the waiting is done by the event
loop, which costs a stalled client a few kilobytes and no thread: Django only ever sees a
request whose body has arrived, like behind a buffering proxy.

One application thread per process (an executor of one): Django's persistent database
connections are per thread, so every request of the process reuses the same connection,
exactly as a sync worker does. Concurrency comes from the processes (`WEB_CONCURRENCY`).

The body is buffered up to DATA_UPLOAD_MAX_MEMORY_SIZE + 1 bytes and no further: a larger one
reaches Django cut there, with that length, and is refused by the size checks (413) without
the server reading the rest. A chunked body arrives de-chunked, with its length set.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote_to_bytes

from django.conf import settings

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _environ(scope: Any, body: bytes) -> dict[str, Any]:
    host, _, port = scope.server.rpartition(":")
    client, _, client_port = scope.client.rpartition(":")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope.method,
        "SCRIPT_NAME": "",
        # PEP 3333: the path percent-decoded, as bytes carried in a latin-1 str.
        "PATH_INFO": unquote_to_bytes(scope.path).decode("latin-1"),
        "QUERY_STRING": scope.query_string,
        "SERVER_NAME": host,
        "SERVER_PORT": port,
        "SERVER_PROTOCOL": f"HTTP/{scope.http_version}",
        "REMOTE_ADDR": client.strip("[]"),
        "REMOTE_PORT": client_port,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.scheme,
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in scope.headers.items():
        # A name with "_" would collide with its "-" twin once both become HTTP_X_Y (a way
        # to smuggle, say, X-Forwarded-Proto past a proxy that filters the dashed form):
        # dropped, as gunicorn and nginx do.
        if "_" in name:
            continue
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif key != "CONTENT_LENGTH":
            key = f"HTTP_{key}"
            environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def _call(wsgi: Wsgi, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    """Run the WSGI application to the end of its response (on the application thread)."""
    answer: list[Any] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        answer[:] = [int(status[:3]), headers]
        return chunks.append

    chunks: list[bytes] = []
    result = wsgi(environ, start_response)
    try:
        chunks.extend(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return answer[0], answer[1], b"".join(chunks)


async def _body(scope: Any, protocol: Any, limit: int) -> bytes | None:
    """The request body, at most `limit` bytes of it; None when the client went away before
    sending all it announced (nobody is left to answer, and a cut body must not be taken
    for a whole one)."""
    received = bytearray()
    async for chunk in protocol:
        received += chunk
        if len(received) >= limit:
            return bytes(received[:limit])
    declared = scope.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > len(received):
        return None
    return bytes(received)


def rsgi_application(wsgi: Wsgi) -> Callable[[Any, Any], Any]:
    """The RSGI entry point serving `wsgi` (see the module docstring)."""
    thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wsgi-app")
    limit = (settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 2_621_440) + 1

    async def application(scope: Any, protocol: Any) -> None:
        if scope.proto != "http":
            return
        body = await _body(scope, protocol, limit)
        if body is None:
            return
        loop = asyncio.get_running_loop()
        status, headers, content = await loop.run_in_executor(
            thread, _call, wsgi, _environ(scope, body)
        )
        protocol.response_bytes(status, headers, content)

    return application
