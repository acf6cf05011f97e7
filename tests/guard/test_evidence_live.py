"""`manage.py evidence` against a running `make run`-style deployment on loopback (gunicorn
and the django-q2 cluster, a loopback JWKS, the local SMTP and SMS servers): GREEN on every
check, and RED, exit 1, once a security header is removed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.management import call_command
from jwt.algorithms import RSAAlgorithm

from comcenter.schedules import sync_schedules
from flags.models import FlagChange
from flags.services import flag_is_on, flags_forget_cache
from identity.services import service_account_create
from tests.support.http_stub import HttpStub, StubAnswer
from tests.support.web import database_url, free_port, wait_live

ROOT = Path(__file__).resolve().parents[2]
ISSUER = "https://idp.example.test/realms/ops"

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("live_store")]


@pytest.fixture
def jwks(http_stub: HttpStub) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = dict(RSAAlgorithm.to_jwk(key.public_key(), as_dict=True))
    jwk.update(kid="evidence-key", alg="RS256", use="sig")
    http_stub.default = StubAnswer(200, {"keys": [jwk]})
    return f"{http_stub.url}/certs"


@pytest.fixture
def deployment(
    settings: Any, tmp_path: Path, jwks: str, smtp_server: Any, sms_gateway: Any
) -> Iterator[dict[str, Any]]:
    call_command("load_demo", verbosity=0)
    sync_schedules()  # the ticker (an earlier test's flush may have emptied the table)
    port = free_port()
    env = dict(os.environ)
    env.update(
        SECRET_KEY=settings.SECRET_KEY,
        DJANGO_SETTINGS_MODULE="tests.guard.web_settings",
        DATABASE_URL=database_url(),
        REDIS_URL=settings.REDIS_URL,
        PORT=str(port),
        JWKS_URL=jwks,
        JWT_ISSUER=ISSUER,
        JWT_AUDIENCE="comcenter-api",
        EMAIL_URL=smtp_server.email_url,
        FLAG_CACHE_SECONDS="0.5",
        TEST_DROP_HEADER_FILE=str(tmp_path / "drop-header"),
        **sms_gateway.env(),
    )
    log = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "comcenter.run"], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_live(base, process, timeout=60)
        yield {
            "base": base,
            "drop": tmp_path / "drop-header",
            "smtp": smtp_server,
            "sms": sms_gateway,
        }
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        log.close()


def _evidence(deployment: dict[str, Any], out: Path, client: tuple[str, str]) -> dict[str, Any]:
    call_command(
        "evidence",
        url=deployment["base"],
        out=str(out),
        client_id=client[0],
        client_secret=client[1],
    )
    return json.loads((out / "summary.json").read_text())


def _manifest_holds(out: Path) -> bool:
    import hashlib

    for line in (out / "MANIFEST.sha256").read_text().splitlines():
        digest, name = line.split("  ")
        if hashlib.sha256((out / name).read_bytes()).hexdigest() != digest:
            return False
    return True


def test_it_is_green_against_a_healthy_deployment_and_red_without_a_header(
    deployment: dict[str, Any], tmp_path: Path
) -> None:
    account, secret = service_account_create(
        name="evidence", scopes=["events:write", "events:read"]
    )
    client = (account.client_id, secret)
    summary = _evidence(deployment, tmp_path / "green", client)
    statuses = {check["name"]: check["status"] for check in summary["checks"]}
    assert statuses == dict.fromkeys(statuses, "GREEN"), summary
    assert list(statuses) == [
        "canary",
        "security_headers",
        "latency_p95",
        "jwks",
        "token",
        "synthetic_events",
        "provider_health",
        "kill_switch",
    ]
    assert summary["overall"] == "GREEN"
    assert all(isinstance(check["ms"], float) for check in summary["checks"])
    assert _manifest_holds(tmp_path / "green")
    log = (tmp_path / "green" / "evidence.log").read_text()
    assert "overall GREEN" in log
    # Nothing left the machine, and the pause was toggled on and back by the command.
    assert deployment["smtp"].messages == []
    assert deployment["sms"].sends == []
    toggles = list(FlagChange.objects.filter(name="DISPATCH_PAUSED").order_by("id"))
    assert [(c.new_value, c.actor) for c in toggles] == [(True, "evidence"), (False, "evidence")]
    flags_forget_cache()
    assert flag_is_on("DISABLE_SEND")

    deployment["drop"].write_text("X-Frame-Options")
    with pytest.raises(SystemExit) as exited:
        _evidence(deployment, tmp_path / "red", client)
    assert exited.value.code == 1
    summary = json.loads((tmp_path / "red" / "summary.json").read_text())
    assert summary["overall"] == "RED"
    headers = next(c for c in summary["checks"] if c["name"] == "security_headers")
    assert headers == {**headers, "status": "RED", "detail": "missing: X-Frame-Options"}
    assert _manifest_holds(tmp_path / "red")
