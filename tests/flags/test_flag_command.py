"""`manage.py flag`: list, show, set with a reason, and clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from flags.models import FlagChange
from flags.registry import FLAGS
from flags.services import flag_is_on

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> str:
    out = StringIO()
    call_command("flag", *args, stdout=out)
    return out.getvalue()


def _row(output: str, name: str) -> list[str]:
    return next(line.split() for line in output.splitlines() if line.startswith(name + " "))


def test_it_lists_every_flag_with_value_and_source(db, settings):
    settings.FLAG_ENV = {"DISABLE_SEND": True, "PROMO_SENDS": True}
    call_command("flag", "SAFE_MODE", "off", "--reason", "pilot", "--actor", "oscar")
    output = _run()
    assert {line.split()[0] for line in output.splitlines()[1:]} == set(FLAGS)
    assert _row(output, "DISABLE_SEND")[:5] == ["DISABLE_SEND", "on", "env", "(forced", "safe)"]
    assert _row(output, "PROMO_SENDS")[:3] == ["PROMO_SENDS", "on", "env"]
    assert _row(output, "SAFE_MODE")[:3] == ["SAFE_MODE", "off", "operator"]
    assert _row(output, "DISPATCH_PAUSED")[:3] == ["DISPATCH_PAUSED", "off", "default"]


def test_it_sets_a_flag_with_a_reason_and_the_given_actor(db, settings):
    settings.FLAG_ENV = {}
    output = _run("dispatch_paused", "on", "--reason", "db failover", "--actor", "oscar")
    assert "DISPATCH_PAUSED: - -> on (effective on), by oscar" in output
    change = FlagChange.objects.get()
    assert (change.name, change.new_value, change.actor, change.reason, change.source) == (
        "DISPATCH_PAUSED",
        True,
        "oscar",
        "db failover",
        "command",
    )
    assert flag_is_on("DISPATCH_PAUSED") is True


def test_it_records_the_os_user_without_actor(db, settings, monkeypatch):
    settings.FLAG_ENV = {}
    monkeypatch.setenv("LOGNAME", "ops-oncall")
    _run("PROMO_SENDS", "on", "--reason", "campaign")
    assert FlagChange.objects.get().actor == "ops-oncall"


def test_it_says_when_the_environment_masks_the_value(db, settings):
    settings.FLAG_ENV = {"DISABLE_SEND": True}
    output = _run("DISABLE_SEND", "off", "--reason", "go live")
    assert "(effective on)" in output
    assert "environment sets DISABLE_SEND=on" in output


def test_it_requires_a_reason_to_set(db):
    with pytest.raises(CommandError, match="--reason is required"):
        _run("DISABLE_SEND", "off")
    assert not FlagChange.objects.exists()


def test_it_refuses_a_value_other_than_on_or_off(db):
    with pytest.raises(CommandError, match="on or off"):
        _run("DISABLE_SEND", "maybe", "--reason", "x")


def test_it_refuses_an_unknown_flag(db):
    with pytest.raises(CommandError, match="unknown flag 'DISABLE_SENDING'"):
        _run("DISABLE_SENDING", "off", "--reason", "x")


def test_it_exits_non_zero_for_an_unknown_flag():
    env = {**os.environ, "SECRET_KEY": "k" * 50}
    result = subprocess.run(
        [sys.executable, "manage.py", "flag", "NO_SUCH_FLAG"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "unknown flag 'NO_SUCH_FLAG'" in result.stderr
