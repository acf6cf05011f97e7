"""Auditors in the admin: the lineage export (the filters of `export_lineage`, CSV or JSON,
with its SHA-256 manifest, as one zip) and the chain check with its result."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from typing import Any

import pytest
from django.test import Client

from audit.models import AuditRecord
from audit.services import audit_append, audit_seal
from tests.audit.tamper import tampering

EXPORT = "/admin/console/lineage/"
VERIFY = "/admin/console/lineage/verify/"


@pytest.fixture
def audrey(member: Any) -> Client:
    audit_append(kind="event.received", request_id="req-a", recipient_id="s-1")
    audit_append(kind="event.received", request_id="req-b", recipient_id="s-2")
    return member("Auditor", "audrey")


def _files(response: Any) -> dict[str, bytes]:
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith('attachment; filename="lineage-')
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_it_downloads_the_filtered_export_with_its_manifest(audrey: Client) -> None:
    response = audrey.get(EXPORT, {"format": "csv", "request_id": "req-a"})

    files = _files(response)
    assert set(files) == {"lineage.csv", "MANIFEST.sha256"}
    digest = hashlib.sha256(files["lineage.csv"]).hexdigest()
    assert files["MANIFEST.sha256"].decode() == f"{digest}  lineage.csv\n"
    rows = list(csv.DictReader(io.StringIO(files["lineage.csv"].decode())))
    assert [(row["kind"], row["request_id"]) for row in rows] == [("event.received", "req-a")]
    record = AuditRecord.objects.get(kind="lineage.exported")
    assert record.actor == "audrey"
    assert record.data["filters"] == {"format": "csv", "request_id": "req-a"}
    assert digest in record.data["manifest"]


def test_it_exports_json_by_recipient_and_time(audrey: Client) -> None:
    response = audrey.get(
        EXPORT, {"format": "json", "recipient": "s-2", "since": "2000-01-01T00:00:00Z"}
    )

    rows = json.loads(_files(response)["lineage.json"])
    assert [row["recipient_id"] for row in rows] == ["s-2"]


@pytest.mark.parametrize(
    "bad",
    [
        {"format": "xml"},
        {"format": "csv", "event": "not-a-uuid"},
        {"format": "csv", "since": "yesterday"},
        {"format": "csv", "recipient": "x" * 300},
    ],
)
def test_it_answers_bad_filters_with_the_form_and_exports_nothing(
    audrey: Client, bad: dict[str, str]
) -> None:
    response = audrey.get(EXPORT, bad)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert response.context["form"].errors
    assert not AuditRecord.objects.filter(kind="lineage.exported").exists()


def test_it_refuses_the_export_and_the_check_to_an_operator(audrey: Client, member: Any) -> None:
    oscar = member("Operator", "oscar")
    assert oscar.get(EXPORT, {"format": "csv"}).status_code == 403
    assert oscar.post(VERIFY).status_code == 403
    assert not AuditRecord.objects.filter(kind__in=["lineage.exported", "audit.verified"]).exists()


def test_it_runs_the_chain_check_and_shows_it_intact(audrey: Client) -> None:
    audit_seal()

    response = audrey.post(VERIFY)

    assert response.status_code == 200
    assert response.context["report"].ok
    assert "Intact" in response.text
    assert AuditRecord.objects.filter(kind="audit.verified", actor="audrey").count() == 1


def test_it_names_the_first_bad_row_when_the_chain_is_broken(audrey: Client) -> None:
    audit_seal()
    first = AuditRecord.objects.order_by("id").first()
    with tampering():
        AuditRecord.objects.filter(pk=first.pk).update(recipient_id="forged")

    response = audrey.post(VERIFY)

    assert response.context["report"].first_bad_id == first.pk
    assert "Broken" in response.text
    assert f"/admin/audit/auditrecord/{first.pk}/change/" in response.text


def test_it_refuses_a_chain_check_by_get(audrey: Client) -> None:
    assert audrey.get(VERIFY).status_code == 405
