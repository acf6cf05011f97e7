"""The real server: gunicorn with deploy/gunicorn.conf.py and two sync workers. Every line on
stdout is JSON, the access line carries the request id, and /metrics counts the requests of
both workers."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.web import WebServer

REQUESTS = 120

pytestmark = pytest.mark.slow


@pytest.fixture
def server(django_db_setup: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    # No proxy in front: /metrics is open to this loopback scraper.
    web = WebServer(tmp_path, server="gunicorn", TRUST_PROXY_HEADERS="false").start()
    try:
        yield {"base": web.base, "log": web.log}
    finally:
        web.stop()


def _get(url: str, **headers: str) -> bytes:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def test_it_logs_json_and_counts_every_workers_requests(server: dict[str, Any]) -> None:
    base = server["base"]
    metrics_before = _get(f"{base}/metrics").decode()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: _get(f"{base}/health/live"), range(REQUESTS)))
    secret = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJl"
    _get(f"{base}/health/live?token={secret}&to=bob@example.org", **{"X-Request-ID": "req-gun"})
    metrics_after = _get(f"{base}/metrics").decode()

    def served(text: str) -> float:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if (
                    sample.name == "django_http_responses_total_by_status_view_method_total"
                    and sample.labels == {"status": "200", "view": "health-live", "method": "GET"}
                ):
                    return sample.value
        return 0.0

    time.sleep(0.5)  # let the last access lines reach the log file
    lines = [line for line in server["log"].read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is JSON
    access = [e for e in entries if e["logger"] == "gunicorn.access"]
    live = [e for e in access if e["path"] == "/health/live"]
    assert len({e["pid"] for e in live}) == 2, "both workers should have served requests"
    # One scrape counts the requests of both workers (the two before it and the one after).
    assert served(metrics_after) - served(metrics_before) == REQUESTS + 1
    tagged = [e for e in access if e["request_id"] == "req-gun"]
    assert len(tagged) == 1
    assert tagged[0]["status"] == 200
    text = server["log"].read_text()
    assert secret not in text
    assert "bob@example.org" not in text
