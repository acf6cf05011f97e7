"""The support-routing smoke-test pack (SPEC §10): each row of a CSV goes through the same
classifier, reply plan and gates as a real ticket — with the row's own flags and whitelist,
never the live ones — and nothing is written or sent. The outcome is compared with the
row's expectations."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flags.registry import FLAGS
from support.classifier import TicketFacts, classifier, split_list
from support.replies import GateInputs, first_closed, reply_gates, reply_plan
from templates.models import Channel, Template

COLUMNS = (
    "case_id",
    "subject",
    "body",
    "channel",
    "customer_email",
    "order_number",
    "linked_orders",
    "flags",
    "expected_intent",
    "expected_tags",
    "expected_team",
    "expected_reply_template",
)
# What a case's `flags` cell may set; WHITELIST and DISABLED name templates (a|b).
CASE_FLAGS = ("AUTOMATION_ENABLED", "SAFE_MODE")


class PackError(ValueError):
    """The pack itself is malformed (a missing column, bad JSON, an unknown flag)."""


@dataclass
class CaseResult:
    case_id: str
    passed: bool
    intent: str
    tags: list[str]
    team: str
    reply_template: str
    blocked_by: str | None
    mismatches: list[str] = field(default_factory=list)


def _case_settings(cell: str, case_id: str) -> tuple[dict[str, bool], set[str], set[str]]:
    flags = {name: FLAGS[name].default for name in CASE_FLAGS}
    whitelisted: set[str] = set()
    disabled: set[str] = set()
    for item in filter(None, (part.strip() for part in cell.split(";"))):
        name, sep, value = item.partition("=")
        name = name.strip().upper()
        if not sep:
            raise PackError(f"{case_id}: flags item {item!r} is not NAME=VALUE")
        if name in ("WHITELIST", "DISABLED"):
            keys = {k.strip() for k in value.split("|") if k.strip()}
            (whitelisted if name == "WHITELIST" else disabled).update(keys)
        elif name in CASE_FLAGS and value.strip().lower() in ("on", "off"):
            flags[name] = value.strip().lower() == "on"
        else:
            raise PackError(f"{case_id}: unknown flags item {item!r}")
    return flags, whitelisted, disabled


def _facts(row: dict[str, str]) -> TicketFacts:
    try:
        orders = json.loads(row["linked_orders"]) if row["linked_orders"].strip() else []
    except ValueError as exc:
        raise PackError(f"{row['case_id']}: linked_orders is not JSON ({exc})") from None
    if not isinstance(orders, list):
        raise PackError(f"{row['case_id']}: linked_orders must be a JSON list")
    return TicketFacts.from_data(
        {
            "subject": row["subject"],
            "body": row["body"],
            "channel": row["channel"],
            "customer": {"email": row["customer_email"]},
            "order_number": row["order_number"],
            "linked_orders": orders,
        }
    )


def smoke_case_run(row: dict[str, str], templates: dict[str, Template]) -> CaseResult:
    """One case: classify, plan the reply, apply the gates; compare."""
    case_id = row["case_id"]
    flags, whitelisted, disabled = _case_settings(row["flags"], case_id)
    facts = _facts(row)
    found = classifier().classify(facts)
    plan = reply_plan(
        classification=found,
        facts=facts,
        tiers={key: t.tier for key, t in templates.items()},
    )
    reply, blocked_by = "", None
    if plan.template:
        template = templates[plan.template]
        gates = reply_gates(
            GateInputs(
                tier=template.tier,
                whitelisted=plan.template in whitelisted,
                enabled=template.enabled and plan.template not in disabled,
                order_matched=bool(plan.match and plan.match.matched),
            ),
            flags,
        )
        blocked_by = first_closed(gates)
        reply = plan.template if blocked_by is None else ""
    result = CaseResult(case_id, True, found.intent, found.tags, found.team, reply, blocked_by)
    expected_tags = split_list(row["expected_tags"])
    checks = [
        ("intent", row["expected_intent"].strip(), found.intent, True),
        ("tags", sorted(expected_tags), sorted(found.tags), bool(expected_tags)),
        ("team", row["expected_team"].strip(), found.team, bool(row["expected_team"].strip())),
        ("reply_template", row["expected_reply_template"].strip(), reply, True),
    ]
    for name, expected, actual, checked in checks:
        if checked and expected != actual:
            result.mismatches.append(f"{name}: expected {expected!r}, got {actual!r}")
    result.passed = not result.mismatches
    return result


def pack_read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise PackError(f"{path}: missing columns {missing}")
        rows = [{c: (row.get(c) or "") for c in COLUMNS} for row in reader]
    ids = [row["case_id"] for row in rows]
    if len(set(ids)) != len(ids) or not all(ids):
        raise PackError(f"{path}: every case needs a unique case_id")
    return rows


def pack_run(rows: Iterable[dict[str, str]]) -> list[CaseResult]:
    templates = {t.key: t for t in Template.objects.filter(channel=Channel.HELPDESK, locale="en")}
    return [smoke_case_run(row, templates) for row in rows]


def report_write(results: list[CaseResult], out: Path) -> dict[str, str]:
    """report.csv, report.json and MANIFEST.sha256 (sha256sum's format) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [asdict(r) for r in results]
    summary = {
        "cases": len(results),
        "passed": sum(r.passed for r in results),
        "failed": sum(not r.passed for r in results),
    }
    (out / "report.json").write_text(
        json.dumps({"summary": summary, "cases": rows}, indent=2, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    with (out / "report.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["case_id"])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "; ".join(v) if isinstance(v, list) else v for k, v in row.items()})
    digests = {
        name: hashlib.sha256((out / name).read_bytes()).hexdigest()
        for name in ("report.csv", "report.json")
    }
    (out / "MANIFEST.sha256").write_text(
        "".join(f"{digest}  {name}\n" for name, digest in digests.items()), encoding="utf-8"
    )
    return digests


def case_line(result: CaseResult) -> str:
    head = f"{'PASS' if result.passed else 'FAIL'} {result.case_id}"
    outcome = f"intent={result.intent} reply={result.reply_template or '-'}"
    if result.blocked_by:
        outcome += f" blocked_by={result.blocked_by}"
    if result.mismatches:
        return f"{head} {outcome}: " + "; ".join(result.mismatches)
    return f"{head} {outcome}"


def summary_of(results: list[CaseResult]) -> dict[str, Any]:
    return {"cases": len(results), "failed": [r.case_id for r in results if not r.passed]}
