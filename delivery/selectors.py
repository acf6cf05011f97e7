"""Reads of the delivery app that other apps reach by dotted path."""

from __future__ import annotations

from typing import Any

from events.models import Event


def messages_for_event(event: Event) -> list[dict[str, Any]]:
    return []
