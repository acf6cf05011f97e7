"""`manage.py guard [--json]` shows each trigger and the open incidents without acting;
`manage.py slo_report [--since --until] [--json]` is the error-budget ledger per day and window."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from guard.measurements import measurement_add
from guard.models import Incident
from guard.services import guard_check

pytestmark = pytest.mark.usefixtures("store")


def _run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_it_shows_the_triggers_and_open_incidents_without_acting() -> None:
    measurement_add({"answers": 100, "errors": 5, "auth_ok": 10})
    data = json.loads(_run("guard", "--json"))
    states = {t["trigger"]: t["state"] for t in data["triggers"]}
    assert states == {
        "errors_5xx": "over",
        "jwt_failures": "insufficient_data",
        "queue_depth": "insufficient_data",  # no sample yet: the guard takes them
        "ack_p95": "insufficient_data",
    }
    assert data["open_incidents"] == []
    assert not Incident.objects.exists()  # the command only reads
    guard_check()
    data = json.loads(_run("guard", "--json"))
    assert {t["trigger"]: t["state"] for t in data["triggers"]}["errors_5xx"] == "open"
    assert [i["trigger"] for i in data["open_incidents"]] == ["errors_5xx"]
    text = _run("guard")
    assert "errors_5xx    open" in text
    assert "incident #" in text


def test_it_reports_each_slo_against_its_budget_per_day(settings) -> None:
    settings.GUARD_QUEUE_FLOOR = 10
    now = time.time()
    measurement_add(
        {
            "answers": 1000,
            "errors": 1,
            "auth_ok": 990,
            "auth_fail": 10,
            "ack_n": 1000,
            "ack_le_10": 960,
            "ack_le_150": 40,
            "probe_n": 100,
            "probe_ok": 100,
            "queue_sum": 5,
            "queue_n": 1,
        },
        at=now,
    )
    data = json.loads(_run("slo_report", "--json"))
    window = {line["name"]: line for line in data["window"]["slos"]}
    assert window["5xx_ratio"]["value"] == pytest.approx(0.001)
    assert window["5xx_ratio"]["budget_used"] == pytest.approx(0.2)  # 0.1 % of 0.5 %
    assert window["5xx_ratio"]["budget_left"] == pytest.approx(0.8)
    assert window["auth_success"]["value"] == pytest.approx(0.99)
    assert window["auth_success"]["budget_used"] == pytest.approx(0.5)
    assert window["p95_ack_ms"]["value"] == 10
    assert window["p95_ack_ms"]["budget_used"] == pytest.approx(0.8)  # 4 % over, of 5 %
    assert window["uptime"]["value"] == 1.0
    assert window["uptime"]["met"] is True
    assert window["dlq_ratio"]["value"] is None  # no message finished: no data, no budget
    assert window["queue_stable"]["met"] is True
    today = datetime.now(UTC).date().isoformat()
    assert data["days"][-1]["day"] == today
    assert len(data["days"]) in (7, 8)  # seven days back from now touch 8 UTC days
    assert "budget used 20.0 % left 80.0 %" in _run("slo_report")


def test_it_reads_the_window_it_is_given() -> None:
    day = datetime(2026, 11, 20, 12, tzinfo=UTC)
    measurement_add({"answers": 10, "errors": 5}, at=day.timestamp())
    data = json.loads(
        _run("slo_report", "--since", "2026-11-20", "--until", "2026-11-21", "--json")
    )
    assert [d["day"] for d in data["days"]] == ["2026-11-20"]
    assert data["days"][0]["slos"][1]["value"] == pytest.approx(0.5)
    assert data["days"][0]["slos"][1]["met"] is False
    data = json.loads(
        _run("slo_report", "--since", "2026-11-21", "--until", "2026-11-22", "--json")
    )
    assert data["window"]["slos"][1]["value"] is None


def test_it_refuses_a_bad_window() -> None:
    with pytest.raises(CommandError, match="--since must be before --until"):
        _run("slo_report", "--since", "2026-11-22", "--until", "2026-11-21")
    with pytest.raises(CommandError, match="--since must be a date"):
        _run("slo_report", "--since", "yesterday")
