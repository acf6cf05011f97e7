"""Metrics are right with several processes: what two processes count, one scrape sums."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]

COUNT = """
import sys, django
django.setup()
from comcenter.lib.metrics import ACK_LATENCY, EVENTS
EVENTS.labels(outcome="accepted", reason="").inc(int(sys.argv[1]))
ACK_LATENCY.observe(0.004)
"""


def _count_in_child(amount: int, directory: Path) -> None:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="comcenter.settings",
        SECRET_KEY=secrets.token_urlsafe(50),
        PROMETHEUS_MULTIPROC_DIR=str(directory),
    )
    subprocess.run(
        [sys.executable, "-c", COUNT, str(amount)], cwd=ROOT, env=env, check=True, timeout=60
    )


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.django_db
@pytest.mark.usefixtures("no_proxy")
def test_it_sums_counters_of_two_processes(client: Client, settings, tmp_path: Path) -> None:
    _count_in_child(3, tmp_path)
    _count_in_child(4, tmp_path)
    settings.PROMETHEUS_MULTIPROC_DIR = str(tmp_path)
    samples = _samples(client.get("/metrics").content.decode())
    accepted = ("comcenter_events_total", (("outcome", "accepted"), ("reason", "")))
    assert samples[accepted] == 7
    assert samples[("comcenter_ack_latency_seconds_count", ())] == 2
    # The database state is there too, once, whatever the number of processes.
    assert samples[("comcenter_scrape_source_ok", (("source", "flags"),))] == 1
