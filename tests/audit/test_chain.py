"""The audit hash chain: sealing, verification, tamper detection."""

from __future__ import annotations

import itertools

import pytest
from django.core.management import call_command

from audit.models import AuditRecord
from audit.services import audit_append, audit_seal, audit_verify


@pytest.fixture
def chain(db):
    for n in range(5):
        audit_append(kind="test.step", actor="alice", data={"n": n})
    assert audit_seal() == 5
    return list(AuditRecord.objects.order_by("seq"))


def test_it_seals_rows_in_a_contiguous_chain(chain):
    assert [r.seq for r in chain] == [1, 2, 3, 4, 5]
    assert chain[0].prev_hash == "0" * 64
    for previous, current in itertools.pairwise(chain):
        assert current.prev_hash == previous.hash
    report = audit_verify()
    assert report.ok
    assert report.checked == 5


def test_it_extends_the_chain_on_the_next_run(chain):
    audit_append(kind="test.step", data={"n": 5})
    assert audit_seal() == 1
    last = AuditRecord.objects.get(seq=6)
    assert last.prev_hash == chain[-1].hash
    assert audit_verify().ok


def test_it_detects_an_altered_row(chain):
    AuditRecord.objects.filter(pk=chain[2].pk).update(data={"n": 99})
    report = audit_verify()
    assert not report.ok
    assert report.first_bad_id == chain[2].pk
    assert "content" in report.problem


def test_it_detects_a_removed_row(chain):
    AuditRecord.objects.filter(pk=chain[1].pk).delete()
    report = audit_verify()
    assert not report.ok
    assert report.first_bad_id == chain[2].pk


def test_it_detects_a_forged_row_rehashed_in_place(chain):
    from audit.services import CHAINED_FIELDS, audit_row_digest

    forged = chain[1]
    row = AuditRecord.objects.values(*CHAINED_FIELDS).get(pk=forged.pk)
    row["data"] = {"n": 42}
    forged.data = row["data"]
    forged.hash = audit_row_digest(row, seq=forged.seq, prev_hash=forged.prev_hash)
    forged.save(update_fields=["data", "hash"])
    report = audit_verify()
    assert not report.ok
    assert report.first_bad_id == chain[2].pk  # its successor no longer links to it


def test_verify_audit_exits_0_when_intact_and_1_naming_the_row(chain, capsys):
    call_command("verify_audit")
    assert "5 rows verified" in capsys.readouterr().out
    AuditRecord.objects.filter(pk=chain[3].pk).update(kind="tampered")
    with pytest.raises(SystemExit) as exit_info:
        call_command("verify_audit")
    assert exit_info.value.code == 1
    assert f"row id {chain[3].pk}" in capsys.readouterr().err


def test_the_row_hash_format_is_stable():
    """Chains sealed by earlier releases must keep verifying: this vector was computed by
    the first implementation of the row hash (model instances, before plain-value rows)."""
    import uuid
    from datetime import UTC, datetime

    from audit.services import audit_row_digest

    row = {
        "id": 7,
        "at": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        "kind": "message.dry_run",
        "request_id": "req-1",
        "event_uid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "message_uid": None,
        "recipient_id": "cust-9",
        "actor": "worker",
        "data": {"to": "x", "n": [1, "é"]},
    }
    digest = audit_row_digest(row, seq=3, prev_hash="a" * 64)
    assert digest == "af91305488ce7f48558fea0c93851a97514c4de9c5bd514e1db70b2bc8eda444"
    assert (
        audit_row_digest({**row, "data": {"to": "y", "n": [1, "é"]}}, seq=3, prev_hash="a" * 64)
        != digest
    )
