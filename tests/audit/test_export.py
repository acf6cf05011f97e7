"""export_lineage: filtered CSV and JSON exports with a manifest that verifies."""

from __future__ import annotations

import csv
import hashlib
import json
import uuid

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditSeal
from audit.services import audit_append, audit_seal


@pytest.fixture
def lineage(db):
    event_a, event_b = uuid.uuid4(), uuid.uuid4()
    audit_append(kind="event.received", event_uid=event_a, recipient_id="r-1", request_id="q-1")
    audit_append(kind="message.sent", event_uid=event_a, recipient_id="r-1", request_id="q-1")
    audit_append(kind="event.received", event_uid=event_b, recipient_id="r-2", request_id="q-2")
    audit_seal()
    return event_a, event_b


def manifest_ok(out) -> str:
    line = (out / "MANIFEST.sha256").read_text().strip()
    digest, name = line.split("  ")
    assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    return name


def test_it_exports_json_for_one_event(lineage, tmp_path):
    event_a, _ = lineage
    call_command(
        "export_lineage", "--event", str(event_a), "--format", "json", "--out", str(tmp_path)
    )
    assert manifest_ok(tmp_path) == "lineage.json"
    rows = json.loads((tmp_path / "lineage.json").read_text())
    assert [r["kind"] for r in rows] == ["event.received", "message.sent"]
    seal = AuditSeal.objects.get(seq=1)
    # Each row names its seal, and the seal lists the row's hash: the export checks against
    # the signed chain.
    assert {(r["seal_seq"], r["seal_hash"]) for r in rows} == {(1, seal.hash)}
    assert all(bytes.fromhex(r["row_hash"]) in bytes(seal.row_hashes) for r in rows)


def test_it_exports_rows_not_sealed_yet_without_a_seal(lineage, tmp_path):
    audit_append(kind="event.received", request_id="q-3")
    call_command(
        "export_lineage", "--request-id", "q-3", "--format", "json", "--out", str(tmp_path)
    )
    [row] = json.loads((tmp_path / "lineage.json").read_text())
    assert (row["seal_seq"], row["seal_hash"], len(row["row_hash"])) == ("", "", 64)


def test_it_exports_csv_by_recipient_and_request_id(lineage, tmp_path):
    call_command(
        "export_lineage", "--recipient", "r-2", "--format", "csv", "--out", str(tmp_path / "a")
    )
    rows = list(csv.DictReader((tmp_path / "a" / "lineage.csv").open()))
    assert [r["recipient_id"] for r in rows] == ["r-2"]
    manifest_ok(tmp_path / "a")
    call_command(
        "export_lineage", "--request-id", "q-1", "--format", "csv", "--out", str(tmp_path / "b")
    )
    assert len(list(csv.DictReader((tmp_path / "b" / "lineage.csv").open()))) == 2


def test_it_filters_by_time_range(lineage, tmp_path):
    call_command(
        "export_lineage",
        "--until",
        "2000-01-01T00:00:00Z",
        "--format",
        "json",
        "--out",
        str(tmp_path),
    )
    assert json.loads((tmp_path / "lineage.json").read_text()) == []


def test_it_rejects_a_naive_time(lineage, tmp_path):
    with pytest.raises(CommandError, match="--since"):
        call_command(
            "export_lineage", "--since", "2026-01-01", "--format", "csv", "--out", str(tmp_path)
        )
