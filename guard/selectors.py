"""Reads of the guard's state for other screens (the console's dashboard)."""

from __future__ import annotations

from django.db.models import QuerySet

from guard.models import Incident, IncidentState


def incidents_open() -> QuerySet[Incident]:
    """The open incidents, newest first."""
    return Incident.objects.filter(state=IncidentState.OPEN).order_by("-opened_at", "-id")
