"""CPU per event of rendering a message's templates: the plain render against the full one.

    .venv/bin/python -m bench.render_cost [--renders 5000] [--rounds 5]

In process, no database: `templates.rendering.render_parts` for the demo's email (subject,
text and HTML bodies) and SMS of `deadline_soon`, with the replay's event data
(bench/workload.py), i.e. what the expansion renders per event. "plain" is the code as it runs;
"full" is the same call with the plain path turned off (`_plan` finding nothing), which
renders every part through Django's node tree inside the template's language, as every render
did before the plain path. The rounds alternate the two; prints the median µs per event of
each (`time.process_time()`).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import time
from unittest import mock

EMAIL = {
    "subject": "{{ scholarship }} closes on {{ deadline }}",
    "body": (
        "Hello,\n\nA reminder that applications for {{ scholarship }} close on "
        "{{ deadline }}. Finish yours before then.\n\n— The scholarships team"
    ),
    "html": (
        "<p>Hello,</p><p>A reminder that applications for <strong>{{ scholarship }}"
        "</strong> close on {{ deadline }}. Finish yours before then.</p>"
    ),
}
SMS = "Reminder: {{ scholarship }} closes on {{ deadline }}."
DATA = {"scholarship": "Bench Fund 3", "deadline": "2026-12-01", "run": "render-cost"}


def _no_plan(source: str) -> None:
    """`rendering._plan` finding no plain template (a function: a Mock's call costs more
    than what is measured)."""
    return None


def _round(renders: int) -> float:
    from templates.rendering import render_parts

    started = time.process_time()
    for _ in range(renders):
        render_parts(channel="email", context=DATA, locale="en", **EMAIL)
        render_parts(channel="sms", subject="", body=SMS, html="", context=DATA, locale="en")
    return (time.process_time() - started) * 1e6 / renders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--renders", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("SECRET_KEY", "bench-" + secrets.token_urlsafe(40))
    os.environ.setdefault("AUDIT_KEY", "bench-" + secrets.token_urlsafe(40))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "comcenter.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from templates import rendering

    costs: dict[str, list[float]] = {"plain": [], "full": []}
    _round(200)  # warm-up: compiled templates, plans, formats
    for _ in range(args.rounds):
        costs["plain"].append(_round(args.renders))
        with mock.patch.object(rendering, "_plan", _no_plan):
            costs["full"].append(_round(args.renders))
    plain, full = (statistics.median(costs[k]) for k in ("plain", "full"))
    print(
        json.dumps(
            {
                "cpu_us_per_event_plain": round(plain, 1),
                "cpu_us_per_event_full": round(full, 1),
                "saving_us": round(full - plain, 1),
                "rounds": {k: [round(v, 1) for v in values] for k, values in costs.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
