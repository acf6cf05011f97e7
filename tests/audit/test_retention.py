"""The audit retention purge: whole seals past AUDIT_RETENTION_DAYS, so that what remains
still verifies from the first kept seal; anything else that shortens the chain is caught."""

from __future__ import annotations

from datetime import timedelta

import pytest

from audit import services
from audit.models import AuditRecord, AuditSeal
from audit.retention import audit_purge
from audit.services import audit_append, audit_seal, audit_verify
from comcenter.lib.metrics import RETENTION_PURGED
from tests.audit.tamper import tampering


def sealed(n: int, *, days_ago: float, monkeypatch) -> None:
    """n seals of two rows each, sealed `days_ago`."""
    then = services.audit_clock() - timedelta(days=days_ago)
    with monkeypatch.context() as patch:
        patch.setattr(services, "audit_clock", lambda: then)
        for _ in range(n):
            audit_append(kind="test.step")
            audit_append(kind="test.step")
            assert audit_seal() == 2


@pytest.fixture
def aged_chain(db, monkeypatch):
    sealed(3, days_ago=500, monkeypatch=monkeypatch)
    sealed(1, days_ago=1, monkeypatch=monkeypatch)


def test_it_purges_whole_seals_past_retention_and_what_remains_verifies(aged_chain):
    before = RETENTION_PURGED.labels("audit_record")._value.get()

    assert audit_purge() == {"seals": 3, "records": 6}

    assert list(AuditSeal.objects.values_list("seq", flat=True)) == [4]
    [purge] = AuditRecord.objects.filter(kind="audit.purged")
    assert purge.data["first_kept_seq"] == 4
    assert purge.data["anchor"] == AuditSeal.objects.get(seq=4).prev_hash
    assert RETENTION_PURGED.labels("audit_record")._value.get() == before + 6
    report = audit_verify()
    assert (report.ok, report.seals, report.checked, report.unsealed) == (True, 1, 2, 1)
    audit_seal()  # the purge's own row joins the chain
    assert audit_verify().ok


def test_it_keeps_the_newest_seal_as_the_anchor_however_old(db, monkeypatch):
    sealed(2, days_ago=500, monkeypatch=monkeypatch)

    assert audit_purge() == {"seals": 1, "records": 2}

    assert list(AuditSeal.objects.values_list("seq", flat=True)) == [2]
    assert audit_verify().ok


def test_it_purges_in_batches_of_seals(aged_chain, monkeypatch):
    monkeypatch.setattr("audit.retention.SEALS_PER_BATCH", 2)
    assert audit_purge(max_batches=1) == {"seals": 2, "records": 4}
    assert audit_verify().ok
    assert audit_purge() == {"seals": 1, "records": 2}
    assert audit_verify().ok


def test_it_detects_old_seals_removed_outside_the_purge(aged_chain):
    with tampering():
        AuditRecord.objects.filter(id__lte=AuditSeal.objects.get(seq=1).last_id).delete()
        AuditSeal.objects.filter(seq=1).delete()
    report = audit_verify()
    assert not report.ok
    assert "no retention purge kept it" in report.problem


def test_it_refuses_a_retention_under_30_days(aged_chain):
    with pytest.raises(ValueError, match="at least 30 days"):
        audit_purge(days=10)
    assert AuditSeal.objects.count() == 4
