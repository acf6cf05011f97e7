"""The effective value of a flag: env safe value > operator > env > default."""

from __future__ import annotations

import pytest

from flags.models import FlagSource
from flags.registry import FLAGS
from flags.services import EffectiveSource, flag_is_on, flag_set, flag_states


def _set(name: str, value: bool) -> None:
    flag_set(name=name, value=value, actor="olivia", reason="test", source=FlagSource.ADMIN)


def _state(name: str):
    return next(state for state in flag_states() if state.name == name)


def test_it_defines_the_eight_flags_of_the_spec():
    assert {name: (d.default, d.safe) for name, d in FLAGS.items()} == {
        "DISABLE_SEND": (True, True),
        "DISPATCH_PAUSED": (False, True),
        "INTAKE_PAUSED": (False, True),
        "PROMO_SENDS": (False, False),
        "RETRIES_ENABLED": (True, False),
        "RATE_LIMIT_ENABLED": (True, True),
        "AUTOMATION_ENABLED": (False, False),
        "SAFE_MODE": (True, True),
    }


def test_it_uses_the_defaults_without_env_or_operator(db, settings):
    settings.FLAG_ENV = {}
    for name, definition in FLAGS.items():
        assert flag_is_on(name) is definition.default
        assert _state(name).source == EffectiveSource.DEFAULT


@pytest.mark.parametrize("name", list(FLAGS))
def test_it_lets_an_env_safe_value_win_over_the_operator(db, settings, name):
    safe = FLAGS[name].safe
    settings.FLAG_ENV = {name: safe}
    _set(name, not safe)
    assert flag_is_on(name) is safe
    state = _state(name)
    assert state.effective is safe
    assert state.db_value is (not safe)
    assert state.source == EffectiveSource.ENV_FORCED_SAFE


@pytest.mark.parametrize("name", list(FLAGS))
def test_it_lets_the_operator_win_over_an_env_unsafe_value(db, settings, name):
    safe = FLAGS[name].safe
    settings.FLAG_ENV = {name: not safe}
    assert flag_is_on(name) is (not safe)
    assert _state(name).source == EffectiveSource.ENV
    _set(name, safe)
    assert flag_is_on(name) is safe
    assert _state(name).source == EffectiveSource.OPERATOR


@pytest.mark.parametrize("name", list(FLAGS))
def test_it_lets_the_operator_override_the_default_both_ways(db, settings, name):
    settings.FLAG_ENV = {}
    _set(name, True)
    assert flag_is_on(name) is True
    _set(name, False)
    assert flag_is_on(name) is False
    assert _state(name).source == EffectiveSource.OPERATOR


def test_it_keeps_the_kill_switch_on_when_env_forces_it(db, settings):
    settings.FLAG_ENV = {"DISABLE_SEND": True}
    _set("DISABLE_SEND", False)
    assert flag_is_on("DISABLE_SEND") is True


def test_it_refuses_unknown_flag_names(db):
    with pytest.raises(KeyError):
        flag_is_on("DISABLE_SENDS")
    with pytest.raises(KeyError):
        flag_set(name="nope", value=True, actor="olivia", reason="x", source=FlagSource.ADMIN)
