"""While the database is unreachable the intake answers 503 with Retry-After (nothing stored,
so a client that retries loses nothing), never a 500; when it is back, the next requests are
accepted. Against a PostgreSQL server of the test's own, stopped and started by the test."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.throwaway_pg import ThrowawayPostgres, postgres_bindir
from tests.support.web import ROOT, WebServer

pytestmark = pytest.mark.slow

DEMO_SECRET = secrets.token_urlsafe(24)


@pytest.fixture
def own_postgres() -> Iterator[ThrowawayPostgres]:
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("needs the PostgreSQL server binaries (initdb, pg_ctl)")
    server = ThrowawayPostgres(bindir)
    try:
        server.start()
        yield server
    finally:
        server.remove()


# The same answers from the server `make run` starts (granian RSGI) and from gunicorn.
@pytest.fixture(params=["granian", "gunicorn"])
def web(
    request: pytest.FixtureRequest, own_postgres: ThrowawayPostgres, tmp_path: Path
) -> Iterator[WebServer]:
    env = {
        "DATABASE_URL": own_postgres.url(),
        "DEMO_CLIENT_ID": "demo",
        "DEMO_CLIENT_SECRET": DEMO_SECRET,
        "REDIS_URL": "",
    }
    server = WebServer(tmp_path, server=request.param, **env)
    for command in (["migrate", "--noinput"], ["load_demo"]):
        subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env=server.env,
            check=True,
            capture_output=True,
            timeout=300,
        )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def call(url: str, body: dict[str, Any], **headers: str) -> tuple[int, dict[str, str], Any]:
    """Status, headers (names lowercased: granian sends them so, gunicorn as set) and body."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, _names_lowered(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, _names_lowered(error.headers), json.loads(error.read())


def _names_lowered(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def test_it_answers_503_with_retry_after_while_the_database_is_down(
    web: WebServer, own_postgres: ThrowawayPostgres
) -> None:
    status, _, grant = call(
        f"{web.base}/api/v1/auth/token",
        {"grant_type": "client_credentials", "client_id": "demo", "client_secret": DEMO_SECRET},
    )
    assert status == 200, grant
    auth = {"Authorization": f"Bearer {grant['access_token']}"}

    def post(key: str) -> tuple[int, dict[str, str], Any]:
        event = {
            "event_type": "deadline_soon",
            "idempotency_key": key,
            "recipient": {"id": "student-42", "email": "a@example.org"},
            "data": {"scholarship": "STEM Futures", "deadline": "2026-12-01"},
        }
        return call(f"{web.base}/api/v1/events", event, **auth)

    assert post("before")[0] == 202
    own_postgres.stop()
    for n in range(6):  # enough to reach both web workers
        status, headers, body = post(f"during-{n}")
        assert status == 503, body
        assert body["error"] == "database_unavailable"
        assert int(headers["retry-after"]) > 0
    own_postgres.start()

    answers = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, _, body = post("after")
        answers.append(status)
        if status in (200, 202):
            break
        time.sleep(0.2)
    assert answers[-1] == 202, answers
    assert set(answers) <= {503, 202}, answers  # a 503 or two while reconnecting, never a 500
    assert "Traceback" not in web.output()

    # Nothing of the refused requests was stored; the acknowledged ones were.
    stored = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from events.models import Event; "
            "print(sorted(Event.objects.values_list('idempotency_key', flat=True)))",
        ],
        cwd=ROOT,
        env={**web.env, "DJANGO_SETTINGS_MODULE": "comcenter.settings"},
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert stored.strip().splitlines()[-1] == "['after', 'before']"
