"""schemathesis hooks for the contract run (tests/contract/schemathesis_run.py).

Loaded by name through SCHEMATHESIS_HOOKS. `before_call` gives the API operations the bearer
token (CONTRACT_TOKEN) and `/metrics` the metrics token (METRICS_TOKEN): one `--header` for
all would send the API token to /metrics. It signs every webhook request as the configured
partner would (Standard Webhooks over the exact bytes sent), so generated bodies get past the
signature to the parser and validation; `after_call` tallies the answers per
operation into CONTRACT_TALLY (a JSON file) for the run's report; `filter_query` keeps
generated queries under the web server's request-line limit."""

from __future__ import annotations

import ast
import base64
import collections
import hashlib
import hmac
import json
import os
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import schemathesis

_tally: collections.Counter[str] = collections.Counter()

# Python 3.11's AST constructor keeps its recursion depth in per-interpreter state, so two
# threads parsing at once can corrupt it ("SystemError: AST constructor recursion depth
# mismatch", CPython gh-106905). Hypothesis parses schemathesis's source to describe the
# lambdas of its query-parameter strategies, and the run's two workers did so together for
# the two operations with query parameters: one parse at a time.
_parse_lock = threading.Lock()
_parse = ast.parse


def _parse_one_at_a_time(*args: Any, **kwargs: Any) -> ast.AST:
    with _parse_lock:
        return _parse(*args, **kwargs)


ast.parse = _parse_one_at_a_time  # type: ignore[assignment]

# The web server answers a request line over its limit (gunicorn: 4,094 bytes) with 414
# itself, before the application; a generated query that long (non-ASCII text grows up to
# 12-fold when percent-encoded) tests the server's framing, not the API.
MAX_QUERY_BYTES = 3500


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    path = case.operation.path
    if path == "/metrics":
        token = os.environ["METRICS_TOKEN"]
    elif path.startswith("/api/"):
        token = os.environ["CONTRACT_TOKEN"]
    else:
        token = ""
    if token:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
    if not path.startswith("/api/v1/webhooks/"):
        return
    source, _, secret = os.environ["CONTRACT_WEBHOOK"].partition("=")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    try:
        raw = json.dumps(case.body).encode() if case.body is not None else b""
    except (TypeError, ValueError):
        return  # not JSON (a negative case of another media type): sent unsigned
    # A body's idempotency_key must equal webhook-id (else 400): use it, so that generated
    # bodies reach validation and intake instead of stopping at that comparison.
    # Only a key that can travel in a header at all: a non-ASCII or control byte there is a
    # framing error that the web server answers itself, before the application (documented in
    # docs/hardening.md), and no schema can describe that answer.
    body_key = case.body.get("idempotency_key") if isinstance(case.body, dict) else None
    sendable = isinstance(body_key, str) and body_key.isascii() and body_key.isprintable()
    message_id = body_key if sendable else f"contract-{uuid.uuid4().hex}"
    timestamp = str(int(time.time()))
    signature = hmac.new(key, f"{message_id}.{timestamp}.".encode() + raw, hashlib.sha256)
    case.path_parameters = {**(case.path_parameters or {}), "source": source}
    case.headers = {
        **(case.headers or {}),
        "webhook-id": message_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(signature.digest()).decode(),
    }
    kwargs["data"] = raw  # the signed bytes are the bytes sent


@schemathesis.hook
def filter_query(context: Any, query: Any) -> bool:
    if not isinstance(query, dict):
        return True
    try:
        return len(urlencode(query, doseq=True)) <= MAX_QUERY_BYTES
    except (TypeError, ValueError):
        return True


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    _tally[f"{case.operation.method.upper()} {case.operation.path} {response.status_code}"] += 1
    with open(os.environ["CONTRACT_TALLY"], "w") as out:
        json.dump(dict(_tally), out, indent=1, sort_keys=True)
