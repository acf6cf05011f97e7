"""WEBHOOK_SECRETS: `source=whsec_…` pairs, a source repeated for rotation; a malformed value
stops the process at start-up with a message that names the variable and no secret."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from identity.webhook_signing import webhook_secrets_parse

KEY_A = b"a" * 32
KEY_B = b"b" * 24
SECRET_A = "whsec_" + base64.b64encode(KEY_A).decode()
SECRET_B = "whsec_" + base64.b64encode(KEY_B).decode()


def test_it_parses_sources_and_their_rotated_secrets() -> None:
    raw = f" acme={SECRET_A}, globex={SECRET_B},acme={SECRET_B}, "
    assert webhook_secrets_parse(raw) == {"acme": (KEY_A, KEY_B), "globex": (KEY_B,)}


def test_it_accepts_unpadded_base64() -> None:
    key = b"c" * 20  # 20 bytes: base64 ends with one "="
    unpadded = "whsec_" + base64.b64encode(key).decode().rstrip("=")
    assert webhook_secrets_parse(f"acme={unpadded}") == {"acme": (key,)}


def test_it_treats_an_empty_value_as_no_sources() -> None:
    assert webhook_secrets_parse("") == {}


@pytest.mark.parametrize(
    "raw",
    [
        "acme",
        f"={SECRET_A}",
        f"ac me={SECRET_A}",
        "acme=c2VjcmV0LXdpdGhvdXQtcHJlZml4LTEyMzQ1",
        "acme=whsec_not*base64*at*all",
        "acme=whsec_" + base64.b64encode(b"short").decode(),
    ],
    ids=["no-equals", "no-source", "space-in-source", "no-prefix", "not-base64", "too-short"],
)
def test_it_names_the_variable_and_never_the_secret(raw: str) -> None:
    with pytest.raises(ImproperlyConfigured) as caught:
        webhook_secrets_parse(raw)
    message = str(caught.value)
    assert "WEBHOOK_SECRETS" in message
    secret = raw.partition("=")[2]
    assert not secret or secret not in message


def test_it_stops_the_process_at_start_up_on_a_malformed_value() -> None:
    env = {
        **os.environ,
        "SECRET_KEY": "x" * 50,
        "WEBHOOK_SECRETS": "acme=whsec_not*base64*at*all",
    }
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=Path(__file__).resolve().parents[2],
        env={**env, "DJANGO_SETTINGS_MODULE": "comcenter.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "WEBHOOK_SECRETS" in result.stderr
    assert "not*base64*at*all" not in result.stderr
