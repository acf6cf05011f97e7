"""`manage.py guard [--json]`: each trigger's value, threshold and state, and the open
incidents (SPEC §8). Reads only: it never trips a trigger nor changes a flag."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from guard.selectors import incidents_open
from guard.triggers import readings


class Command(BaseCommand):
    help = "Show the guard's triggers (value, threshold, state) and the open incidents."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="one JSON object on stdout")

    def handle(self, *args: Any, **options: Any) -> None:
        open_incidents = list(incidents_open())
        held = {incident.trigger: incident.pk for incident in open_incidents}
        triggers = []
        for reading in readings():
            data = reading.as_json()
            if reading.trigger in held:
                data["state"] = "open"
            elif reading.value is None:
                data["state"] = "insufficient_data"
            else:
                data["state"] = "over" if reading.tripped else "ok"
            triggers.append(data)
        incidents = [
            {
                "id": incident.pk,
                "trigger": incident.trigger,
                "measured": incident.measured,
                "threshold": incident.threshold,
                "window_seconds": incident.window_seconds,
                "flag": incident.flag,
                "opened_at": incident.opened_at.isoformat(),
                "detail": incident.detail,
            }
            for incident in open_incidents
        ]
        if options["json"]:
            payload = {
                "enabled": settings.GUARD_ENABLED,
                "interval_seconds": settings.GUARD_INTERVAL_SECONDS,
                "triggers": triggers,
                "open_incidents": incidents,
            }
            self.stdout.write(json.dumps(payload))
            return
        state = "enabled" if settings.GUARD_ENABLED else "DISABLED (GUARD_ENABLED=false)"
        self.stdout.write(f"guard {state}, every {settings.GUARD_INTERVAL_SECONDS:g} s")
        for data in triggers:
            value = "-" if data["value"] is None else data["value"]
            self.stdout.write(
                f"  {data['trigger']:<13} {data['state']:<17} value {value} "
                f"threshold {data['threshold']:g} window {data['window_seconds']} s -> "
                f"{data['flag']}  ({data['detail']})"
            )
        if not incidents:
            self.stdout.write("no open incidents")
        for incident in incidents:
            self.stdout.write(
                f"  incident #{incident['id']} {incident['trigger']} open since "
                f"{incident['opened_at']}: {incident['measured']:g} vs {incident['threshold']:g}"
                f", {incident['flag']} on"
            )
