"""A Redis outage is reported, not shouted: with the web server taking events and the
django-q2 cluster running, each cause of warning appears about once per LOG_REPEAT_SECONDS
(here the default minute) instead of once per request and twice a second from the cluster.
Against a Redis server of the test's own, killed by the test."""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from events.services import event_type_ensure
from identity.auth import issue_access_token
from identity.services import service_account_create
from tests.support.web import ROOT, WebServer, free_port

pytestmark = pytest.mark.slow

REQUESTS = 40


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    process.port = port  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).returncode:
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.1)
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def causes(text: str) -> collections.Counter[tuple[str, str]]:
    """WARNING and louder lines by logger and message (digits masked)."""
    counted: collections.Counter[tuple[str, str]] = collections.Counter()
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") in ("WARNING", "ERROR", "CRITICAL"):
            counted[(entry["logger"], re.sub(r"[0-9a-f]{6,}|[0-9]+", "#", entry["msg"]))] += 1
    return counted


def test_it_logs_each_cause_of_a_redis_outage_about_once(
    transactional_db: Any, own_redis: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    event_type_ensure(name="deadline_soon")
    account, _ = service_account_create(name="alice", scopes=["events:write"])
    token = str(issue_access_token(account, ["events:write"]))
    redis_url = f"redis://127.0.0.1:{own_redis.port}/0"  # type: ignore[attr-defined]
    web = WebServer(tmp_path, REDIS_URL=redis_url).start()
    cluster_log = tmp_path / "cluster.log"
    with cluster_log.open("wb") as out:
        cluster = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env={**web.env, "Q_WORKERS": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        time.sleep(3)  # the cluster is up and talking to Redis
        own_redis.kill()
        own_redis.wait()
        statuses = []
        for n in range(REQUESTS):
            request = urllib.request.Request(
                f"{web.base}/api/v1/events",
                data=json.dumps(
                    {
                        "event_type": "deadline_soon",
                        "idempotency_key": f"outage-{n}",
                        "recipient": {"id": "r", "email": "a@example.org"},
                    }
                ).encode(),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=20) as response:
                    statuses.append(response.status)
            except urllib.error.HTTPError as error:
                statuses.append(error.code)
        time.sleep(8)  # the cluster's sentinel and pusher keep failing meanwhile
    finally:
        os.killpg(cluster.pid, signal.SIGKILL)
        cluster.wait()
        web.stop()

    assert statuses == [202] * REQUESTS  # events are still taken (the sweeper hands them off)
    web_causes = causes(web.output())
    cluster_causes = causes(cluster_log.read_text(errors="replace"))
    assert web_causes, "the outage must still be reported"
    assert cluster_causes, "the outage must still be reported"
    # Two processes racing on a cause's marker may both report it; never more.
    assert max(web_causes.values()) <= 2, web_causes
    assert max(cluster_causes.values()) <= 2, cluster_causes
