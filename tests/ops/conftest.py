"""Fixtures of the operations tests: fresh health and latency state, closed and silent ports."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from comcenter.health import health_forget
from comcenter.lib.latency import ack_latency_forget
from flags.services import flags_forget_cache


@pytest.fixture(autouse=True)
def _fresh_ops_state(settings: Any) -> Iterator[None]:
    # Health reports and flag values are cached per process, ack samples live in a shared
    # store: each test starts from nothing.
    health_forget()
    flags_forget_cache()
    ack_latency_forget()
    yield
    health_forget()
    flags_forget_cache()


@pytest.fixture
def no_proxy(settings: Any) -> None:
    """No reverse proxy in front (TRUST_PROXY_HEADERS off): /metrics is open to loopback."""
    settings.TRUST_PROXY_HEADERS = False


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers (a hung dependency)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            accepted.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def redis_cache_at(port: int, *, timeout: float = 0.5) -> dict[str, Any]:
    """CACHES pointing the default cache at a Redis on `port` with socket timeouts."""
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {"socket_connect_timeout": timeout, "socket_timeout": timeout},
        }
    }
