"""Every flag change records who, when, why, old -> new and the effective value after."""

from __future__ import annotations

import pytest

from audit.models import AuditRecord
from flags.models import Flag, FlagChange, FlagSource
from flags.services import flag_is_on, flag_set


def test_it_records_a_change_with_who_when_why_and_old_to_new(db, settings):
    settings.FLAG_ENV = {}
    first = flag_set(
        name="DISABLE_SEND", value=False, actor="olivia", reason="go live", source=FlagSource.ADMIN
    )
    second = flag_set(
        name="DISABLE_SEND",
        value=True,
        actor="oscar",
        reason="incident 42",
        source=FlagSource.COMMAND,
    )
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.old_value, first.new_value, first.effective_value) == (None, False, False)
    assert (second.old_value, second.new_value, second.effective_value) == (False, True, True)
    assert (second.actor, second.reason, second.source) == ("oscar", "incident 42", "command")
    assert second.at >= first.at
    row = Flag.objects.get(name="DISABLE_SEND")
    assert (row.value, row.updated_by, row.reason) == (True, "oscar", "incident 42")
    assert list(FlagChange.objects.values_list("id", flat=True)) == [second.id, first.id]


def test_it_writes_an_audit_row_per_change(db, settings):
    settings.FLAG_ENV = {}
    change = flag_set(
        name="PROMO_SENDS", value=True, actor="olivia", reason="spring sale", source="admin"
    )
    record = AuditRecord.objects.get(kind="flag.changed")
    assert record.actor == "olivia"
    assert record.data == {
        "flag": "PROMO_SENDS",
        "old_value": None,
        "new_value": True,
        "old_effective": False,
        "effective": True,
        "effective_source": "operator",
        "source": "admin",
        "reason": "spring sale",
        "change_id": change.pk,
    }


def test_it_records_that_an_env_safe_value_masks_the_change(db, settings):
    settings.FLAG_ENV = {"DISABLE_SEND": True}
    change = flag_set(
        name="DISABLE_SEND", value=False, actor="olivia", reason="try", source=FlagSource.ADMIN
    )
    assert change.new_value is False
    assert change.effective_value is True
    assert AuditRecord.objects.get(kind="flag.changed").data["effective_source"] == (
        "env (forced safe)"
    )
    assert flag_is_on("DISABLE_SEND") is True


@pytest.mark.parametrize("reason", ["", "   "])
def test_it_requires_a_reason(db, reason):
    with pytest.raises(ValueError, match="reason"):
        flag_set(name="SAFE_MODE", value=False, actor="olivia", reason=reason, source="admin")
    assert not Flag.objects.exists()
    assert not FlagChange.objects.exists()
    assert not AuditRecord.objects.filter(kind="flag.changed").exists()


def test_it_requires_an_actor(db):
    with pytest.raises(ValueError, match="actor"):
        flag_set(name="SAFE_MODE", value=False, actor=" ", reason="why", source="admin")


def test_it_refuses_an_unknown_source(db):
    with pytest.raises(ValueError, match="source"):
        flag_set(name="SAFE_MODE", value=False, actor="olivia", reason="why", source="shell")


def test_it_makes_the_change_visible_at_once_in_this_process(db, settings):
    settings.FLAG_ENV = {}
    assert flag_is_on("DISPATCH_PAUSED") is False
    flag_set(
        name="DISPATCH_PAUSED", value=True, actor="olivia", reason="db upgrade", source="admin"
    )
    assert flag_is_on("DISPATCH_PAUSED") is True
