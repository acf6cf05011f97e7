"""`manage.py check --deploy` is clean with production-like settings (the silenced checks are
documented in settings.py), and does catch a production deployment left in DEBUG."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _check_deploy(**overrides: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/root"),
        "ENV_FILE": "",  # a developer's .env (e.g. cookies without Secure) must not leak in
        "SECRET_KEY": secrets.token_urlsafe(50),
        "AUDIT_KEY": secrets.token_urlsafe(40),
        "DEBUG": "false",
        "ALLOWED_HOSTS": "comcenter.example.org",
        "DATABASE_URL": "sqlite:////tmp/comcenter-deploy-check.sqlite3",
        **overrides,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_it_passes_the_deploy_checks_in_production_settings() -> None:
    result = _check_deploy()
    assert result.returncode == 0, result.stderr


def test_it_fails_the_deploy_checks_in_debug() -> None:
    result = _check_deploy(DEBUG="true")
    assert result.returncode != 0
    assert "security.W018" in result.stderr
