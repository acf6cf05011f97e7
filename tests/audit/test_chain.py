"""The audit chain: insert-only sealing, verification, and every kind of tampering."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone

from audit import services
from audit.models import AuditRecord, AuditSeal
from audit.services import (
    CHAINED_FIELDS,
    GENESIS,
    audit_append,
    audit_row_hash,
    audit_seal,
    audit_seal_header,
    audit_unsealed_count,
    audit_verify,
)
from comcenter.lib.metrics import AUDIT_HEAD_SEQ
from tests.audit.tamper import tampering


def append(n: int, **fields) -> list[AuditRecord]:
    for i in range(n):
        audit_append(kind="test.step", actor="alice", data={"n": i}, **fields)
    return list(AuditRecord.objects.order_by("-id")[:n])[::-1]


@pytest.fixture
def chain(db) -> list[AuditRecord]:
    """Two seals: rows 0-2 in seal 1, rows 3-5 in seal 2."""
    rows = append(3)
    assert audit_seal() == 3
    rows += append(3)
    assert audit_seal() == 3
    return rows


def seal(seq: int) -> AuditSeal:
    return AuditSeal.objects.get(seq=seq)


def test_it_seals_rows_by_inserting_one_seal_per_batch_and_never_updating_a_row(db):
    rows = append(5)
    with CaptureQueriesContext(connection) as queries:
        assert audit_seal(batch=2) == 5
    assert not [
        q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(("UPDATE", "DELETE"))
    ]
    seals = list(AuditSeal.objects.order_by("seq"))
    assert [(s.seq, s.first_id, s.last_id) for s in seals] == [
        (1, rows[0].id, rows[1].id),
        (2, rows[2].id, rows[3].id),
        (3, rows[4].id, rows[4].id),
    ]
    assert seals[0].prev_hash == GENESIS
    assert [s.prev_hash for s in seals[1:]] == [s.hash for s in seals[:-1]]
    assert bytes(seals[0].row_hashes) == audit_row_hash(
        AuditRecord.objects.values().get(pk=rows[0].id)
    ) + audit_row_hash(AuditRecord.objects.values().get(pk=rows[1].id))
    report = audit_verify()
    assert (report.ok, report.checked, report.seals, report.unsealed) == (True, 5, 3, 0)


def test_it_extends_the_chain_from_the_newest_seal(chain):
    append(1)
    assert audit_seal() == 1
    assert seal(3).prev_hash == seal(2).hash
    assert seal(3).first_id == seal(2).last_id + 1
    assert audit_verify().ok


def test_it_reads_one_statement_when_nothing_is_new_and_seals_what_comes_next(chain):
    with CaptureQueriesContext(connection) as queries:
        assert audit_seal() == 0
    assert len(queries) == 1  # no transaction, no lock, no row read

    append(2)

    assert audit_seal() == 2
    assert audit_verify().ok


def test_it_publishes_the_head_in_the_log_and_the_metrics_on_every_seal(
    db, caplog, django_capture_on_commit_callbacks
):
    append(2)
    with (
        caplog.at_level(logging.INFO, logger="audit.services"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        audit_seal()
    head = seal(1)
    published = [r for r in caplog.records if r.getMessage() == "audit chain sealed"]
    assert [r.head for r in published] == [f"1:{head.hash}"]
    assert AUDIT_HEAD_SEQ._value.get() == 1


def seal_all(*, timeout: float = 10.0) -> int:
    """Seal until nothing is left: a missing id holds sealing back until it is settled."""
    sealed, deadline = 0, time.monotonic() + timeout
    while audit_unsealed_count() and time.monotonic() < deadline:
        sealed += audit_seal()
        time.sleep(0.05)
    return sealed


def test_it_records_a_missing_id_as_a_gap_and_detects_a_row_inserted_there(db, monkeypatch):
    monkeypatch.setattr(services, "GAP_SETTLE_SECONDS", 0.1)
    rows = append(3)
    with tampering():
        AuditRecord.objects.filter(pk=rows[1].pk).delete()  # e.g. a rolled-back insert
    assert seal_all() == 2
    assert [gap for s in AuditSeal.objects.all() for gap in s.gaps] == [rows[1].pk]
    assert audit_verify().ok
    AuditRecord(id=rows[1].pk, kind="forged", data={}).save(force_insert=True)
    report = audit_verify()
    assert (report.ok, report.first_bad_id) == (False, rows[1].pk)
    assert "inserted" in report.problem


def test_it_detects_an_altered_row_naming_it(chain):
    with tampering():
        AuditRecord.objects.filter(pk=chain[4].pk).update(data={"n": 99})
    report = audit_verify()
    assert (report.ok, report.first_bad_id) == (False, chain[4].pk)
    assert "content" in report.problem


def test_it_detects_rows_that_swapped_places(chain):
    with tampering():
        AuditRecord.objects.filter(pk=chain[1].pk).update(data={"n": 2})
        AuditRecord.objects.filter(pk=chain[2].pk).update(data={"n": 1})
    report = audit_verify()
    assert (report.ok, report.first_bad_id) == (False, chain[1].pk)


def test_it_detects_a_row_removed_from_the_middle(chain):
    with tampering():
        AuditRecord.objects.filter(pk=chain[1].pk).delete()
    report = audit_verify()
    assert (report.ok, report.first_bad_id) == (False, chain[1].pk)
    assert "removed" in report.problem


def test_it_detects_the_newest_row_removed(chain):
    with tampering():
        AuditRecord.objects.filter(pk=chain[-1].pk).delete()
    report = audit_verify()
    assert (report.ok, report.first_bad_id) == (False, chain[-1].pk)


def test_it_detects_a_removed_seal(chain):
    append(1)
    audit_seal()
    with tampering():
        AuditSeal.objects.filter(seq=2).delete()
    report = audit_verify()
    assert not report.ok
    assert "seal 2 is missing" in report.problem


def test_it_detects_the_tail_cut_against_the_published_head(chain):
    head = f"2:{seal(2).hash}"
    assert audit_verify(expect_head=head).ok
    with tampering():
        AuditRecord.objects.filter(id__gte=seal(2).first_id).delete()
        AuditSeal.objects.filter(seq=2).delete()
    assert audit_verify().ok  # a shorter chain is still a valid chain ...
    report = audit_verify(expect_head=head)  # ... but not the one published
    assert not report.ok
    assert "published head" in report.problem


def test_it_detects_newest_seals_cut_while_their_rows_stay(chain):
    with tampering():
        AuditSeal.objects.filter(seq=2).delete()
    assert audit_verify().ok  # within the sealing interval the rows may be new
    with override_settings(AUDIT_SEAL_INTERVAL_SECONDS=0):
        report = audit_verify()
    assert (report.ok, report.first_bad_id) == (False, chain[3].pk)
    assert "unsealed" in report.problem


def test_it_detects_an_altered_unsealed_row_older_than_the_sealing_interval(db):
    old = timezone.now() - timedelta(minutes=10)
    AuditRecord(kind="test.step", at=old, data={"n": 1}).save(force_insert=True)
    fresh = append(1)[0]
    with tampering():
        AuditRecord.objects.filter(kind="test.step", at=old).update(data={"n": 2})
    report = audit_verify()
    assert not report.ok
    assert report.first_bad_id == fresh.pk - 1
    assert "unsealed for longer than 300 s" in report.problem


def test_it_detects_a_forged_suffix_rehashed_without_the_key(chain):
    """Someone who can write the tables but has no AUDIT_KEY alters a row and re-does the
    hashes of its seal: only the HMAC stops them."""
    forged = seal(2)
    with tampering():
        AuditRecord.objects.filter(pk=chain[3].pk).update(data={"n": 42})
        rows = AuditRecord.objects.filter(id__range=(forged.first_id, forged.last_id))
        row_hashes = b"".join(audit_row_hash(r) for r in rows.order_by("id").values())
        header = audit_seal_header(
            seq=2,
            first_id=forged.first_id,
            last_id=forged.last_id,
            gaps=[],
            row_hashes=row_hashes,
            prev_hash=forged.prev_hash,
            sealed_at=forged.sealed_at,
        )
        guess = hmac.new(b"not the key", header.encode(), hashlib.sha256).hexdigest()
        AuditSeal.objects.filter(seq=2).update(row_hashes=row_hashes, hash=guess)
    report = audit_verify()
    assert (report.ok, report.first_bad_id) == (False, forged.first_id)
    assert "not signed with AUDIT_KEY" in report.problem


def test_it_detects_a_row_before_the_start_of_the_chain(chain):
    AuditRecord(id=chain[0].pk - 1, kind="forged", data={}).save(force_insert=True)
    report = audit_verify()
    assert (report.ok, report.first_bad_id) == (False, chain[0].pk - 1)


def test_verify_audit_exits_0_when_intact_and_1_naming_the_row(chain, capsys):
    call_command("verify_audit")
    out = capsys.readouterr().out
    assert "6 rows verified in 2 seals" in out
    assert f"head 2:{seal(2).hash}" in out
    with tampering():
        AuditRecord.objects.filter(pk=chain[3].pk).update(kind="tampered")
    with pytest.raises(SystemExit) as exit_info:
        call_command("verify_audit")
    assert exit_info.value.code == 1
    assert f"row id {chain[3].pk}" in capsys.readouterr().err


def test_verify_audit_checks_a_published_head(chain, capsys):
    call_command("verify_audit", "--expect-head", f"2:{seal(2).hash}")
    with pytest.raises(SystemExit):
        call_command("verify_audit", "--expect-head", f"3:{'a' * 64}")
    assert "published head" in capsys.readouterr().err


@override_settings(AUDIT_KEY="k" * 40)
def test_the_seal_format_is_stable():
    """Known answer: chains sealed by this release must keep verifying in later ones."""
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
    row_hash = audit_row_hash(row)
    # SHA-256 of the canonical JSON (sorted keys, no spaces, UTF-8 as is) of the row:
    # {"actor":"worker","at":"2026-01-02T03:04:05.678000+00:00","data":{"n":[1,"é"],"to":"x"},
    #  "event_uid":"12345678-...","id":7,"kind":"message.dry_run","message_uid":null,...}
    assert row_hash.hex() == "35100f24ede5afbfb7fe39da40118a2f0c73234adf81865043e1215bb114be29"
    header = audit_seal_header(
        seq=3,
        first_id=7,
        last_id=9,
        gaps=[8],
        row_hashes=row_hash + row_hash,
        prev_hash="a" * 64,
        sealed_at=datetime(2026, 1, 2, 3, 5, tzinfo=UTC),
    )
    assert header == (
        '{"first_id":7,"gaps":[8],"last_id":9,"prev_hash":"' + "a" * 64 + '",'
        '"rows":"93d4a197aa0c1fb3485cdf680a0f8cc4388782241d79c368817a57eb55e12ec7",'
        '"sealed_at":"2026-01-02T03:05:00+00:00","seq":3,"v":1}'
    )
    from audit.services import audit_seal_sign

    # HMAC-SHA256 of that header with the key "k" * 40.
    assert audit_seal_sign(header) == (
        "a077378578b9e3e33fa87ea86391ffecadea06e2c98981adbd480e0321303be1"
    )
    changed = {
        "id": 8,
        "at": datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC),
        "kind": "message.sent",
        "request_id": "req-2",
        "event_uid": None,
        "message_uid": uuid.UUID("12345678-1234-5678-1234-567812345679"),
        "recipient_id": "cust-8",
        "actor": "ops",
        "data": {"to": "y", "n": [1, "é"]},
    }
    assert set(changed) == set(CHAINED_FIELDS)
    for name, value in changed.items():  # every chained field is covered by the hash
        assert audit_row_hash({**row, name: value}) != row_hash, name
