"""For tests that start a real server process against the test database."""

from __future__ import annotations

import socket

from django.conf import settings


def database_url() -> str:
    """The test database as a DATABASE_URL, for a server process started by the test."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
