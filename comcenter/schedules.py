"""The periodic tasks every deployment runs, registered as django-q2 schedules by name."""

from __future__ import annotations

from typing import Any

from django.conf import settings


def sync_schedules() -> list[str]:
    """Create or update the schedules of settings.PERIODIC_TASKS; returns their names."""
    from django_q.models import Schedule

    names = []
    for name, func, minutes in settings.PERIODIC_TASKS:
        Schedule.objects.update_or_create(
            name=name,
            defaults={
                "func": func,
                "schedule_type": Schedule.MINUTES,
                "minutes": minutes,
                "repeats": -1,
            },
        )
        names.append(name)
    return names


def sync_schedules_after_migrate(**kwargs: Any) -> None:
    sync_schedules()
