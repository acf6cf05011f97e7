"""The contract run of CI: schemathesis against the published /api/schema/ of a real server.

`python -m tests.contract.schemathesis_run` with DATABASE_URL (an empty PostgreSQL database
of its own, or SQLite) and optionally REDIS_URL. It migrates, creates the event types and a
service account, starts the web server `make run` starts (granian) on a free loopback port
with a webhook partner configured, and runs schemathesis with the signing hook
(tests/contract/schemathesis_hooks.py), every phase (the schema's examples, coverage,
fuzzing, stateful) within CONTRACT_MAX_SECONDS; the hook gives the API operations the bearer
token and `/metrics` the metrics token (the ops views are in the schema too). Checks: no
5xx, status codes, content types, headers and bodies as the schema says. It also proves that
the schema alone lets a client post a valid event: the published request example, sent as
schemathesis builds it from the schema, must be answered 202 (or 200 as a duplicate). Prints
operations, cases and failures; exits 1 on any failure."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
    ]
)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="comcenter-contract-"))
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    os.environ.update(
        DJANGO_SETTINGS_MODULE="comcenter.settings",
        ENV_FILE="",
        SECRET_KEY=os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        WEBHOOK_SECRETS=f"contract={secret}",
        METRICS_TOKEN="metrics-" + secrets.token_urlsafe(32),
        # The run sends thousands of requests: throttles would answer most of them 429.
        THROTTLE_INTAKE="1000000/min",
        THROTTLE_TOKEN="1000000/min",
        THROTTLE_WEBHOOK="1000000/min",
        THROTTLE_SUPPRESSIONS="1000000/min",
        LOG_LEVEL="WARNING",
    )
    import django

    django.setup()
    from django.core.management import call_command

    from events.services import event_type_ensure
    from identity.auth import issue_access_token
    from identity.models import SCOPES
    from identity.services import service_account_create
    from tests.support.web import WebServer

    call_command("migrate", verbosity=0, interactive=False)
    for name in ("deadline_soon", "new_match"):
        event_type_ensure(name=name)
    # Every scope, so that generated requests to every operation get past the scope check.
    scopes = list(SCOPES)
    account, _ = service_account_create(name=f"contract-{secrets.token_hex(4)}", scopes=scopes)
    token = str(issue_access_token(account, scopes))

    web = WebServer(work, workers=2).start()
    tally_path = work / "tally.json"
    report = work / "report.json"
    budget = os.environ.get("CONTRACT_MAX_SECONDS", "120")
    try:
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"{web.base}/api/schema/",
                "--checks",
                CHECKS,
                "--max-time",
                budget,
                "--max-examples",
                os.environ.get("CONTRACT_MAX_EXAMPLES", "60"),
                "--workers",
                "2",
                "--seed",
                os.environ.get("CONTRACT_SEED", str(secrets.randbelow(2**31))),
                "--request-timeout",
                "10",
                "--generation-database",
                "none",
                "--no-color",
                "--report",
                "ndjson",
                "--report-ndjson-path",
                str(report),
            ],
            env={
                **os.environ,
                "SCHEMATHESIS_HOOKS": "tests.contract.schemathesis_hooks",
                "CONTRACT_WEBHOOK": f"contract={secret}",
                "CONTRACT_TOKEN": token,
                "CONTRACT_TALLY": str(tally_path),
                "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            },
            check=False,
        )
    finally:
        web.stop()
    tally: dict[str, int] = json.loads(tally_path.read_text()) if tally_path.exists() else {}
    server_errors = {line: n for line, n in tally.items() if line.rsplit(" ", 1)[1][0] == "5"}
    operations = sorted({line.rsplit(" ", 1)[0] for line in tally})
    accepted = sum(
        n
        for line, n in tally.items()
        if line.startswith("POST /api/v1/events ") and line.endswith((" 202", " 200"))
    )
    signed = sum(
        n
        for line, n in tally.items()
        if line.startswith("POST /api/v1/webhooks/") and not line.endswith((" 401", " 405"))
    )
    metrics_read = tally.get("GET /metrics 200", 0)
    print("\ncontract run: answers by operation and status")
    for line in sorted(tally):
        print(f"  {line}: {tally[line]}")
    print(
        f"contract run: {len(operations)} operations, {sum(tally.values())} cases, "
        f"schemathesis exit {completed.returncode}, 5xx answers {sum(server_errors.values())}, "
        f"events accepted from schema-built requests {accepted}, "
        f"signed webhooks past the signature check {signed}, metrics read with the token "
        f"{metrics_read}"
    )
    if "Traceback" in web.output():
        print("contract run: the server logged a traceback", file=sys.stderr)
        return 1
    if completed.returncode != 0 or server_errors or not accepted or not signed:
        return 1
    if not metrics_read or not {"GET /health", "GET /canary"} <= set(operations):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
