"""`manage.py smoke_pack`: the shipped baseline passes against the demo rules and
templates; a changed expectation fails the run with exit 1; the report is verifiable."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from delivery.models import Message
from events.models import Event
from support.models import Ticket

BASELINE = Path(__file__).resolve().parents[2] / "support" / "smoke" / "baseline.csv"


def changed_copy(tmp_path: Path, case_id: str, **changes: str) -> Path:
    with BASELINE.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        if row["case_id"] == case_id:
            row.update(changes)
    path = tmp_path / "pack.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_it_ships_a_baseline_of_at_least_30_cases_covering_every_intent():
    with BASELINE.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) >= 30
    assert {r["expected_intent"] for r in rows} == {
        "sales",
        "returns",
        "technical_support",
        "order_status",
        "delivered_not_received",
        "missing_items",
        "other",
    }
    replies = {r["expected_reply_template"] for r in rows}
    assert {"t_order_status_verified", "t_order_status_ask_order_number", ""} <= replies


def test_it_passes_the_baseline_and_writes_a_verifiable_report(support_demo, tmp_path, capsys):
    call_command("smoke_pack", str(BASELINE), out=str(tmp_path))

    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("PASS ") for line in lines) >= 30
    assert not any(line.startswith("FAIL ") for line in lines)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["summary"]["failed"] == 0
    manifest = (tmp_path / "MANIFEST.sha256").read_text().splitlines()
    for line in manifest:
        digest, name = line.split("  ")
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == digest
    assert subprocess.run(["sha256sum", "-c", "MANIFEST.sha256"], cwd=tmp_path).returncode == 0
    # Nothing was stored or sent: the pack only decides.
    assert (Event.objects.count(), Message.objects.count(), Ticket.objects.count()) == (0, 0, 0)


@pytest.mark.parametrize(
    ("case_id", "changes"),
    [
        ("tier2_match_field", {"expected_reply_template": "t_order_status_ask_order_number"}),
        ("inside_word_apparel", {"expected_intent": "technical_support"}),
        ("sales_pricing", {"expected_team": "Returns"}),
    ],
)
def test_it_fails_with_exit_1_on_a_changed_expectation(
    support_demo, tmp_path, capsys, case_id, changes
):
    pack = changed_copy(tmp_path, case_id, **changes)

    with pytest.raises(CommandError) as failed:
        call_command("smoke_pack", str(pack), out=str(tmp_path / "out"))

    assert failed.value.returncode == 1
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL ")]
    assert line.startswith(f"FAIL {case_id} ")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["summary"]["failed"] == 1


def test_it_refuses_a_pack_with_an_unknown_flag(support_demo, tmp_path):
    pack = changed_copy(tmp_path, "sales_pricing", flags="DISABLE_SEND=off")

    with pytest.raises(CommandError, match="unknown flags item"):
        call_command("smoke_pack", str(pack), out=str(tmp_path / "out"))
