"""Template builders shared by the template tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from templates.models import Template
from templates.services import template_create


@pytest.fixture
def make_template(db: Any) -> Callable[..., Template]:
    def make(**overrides: Any) -> Template:
        fields: dict[str, Any] = {
            "key": "deadline_soon_email",
            "channel": "email",
            "subject": "{{ scholarship }} closes on {{ deadline }}",
            "body": "Hello {{ name }}, {{ scholarship }} closes on {{ deadline }}.",
            "html": "<p>Hello {{ name }}, <b>{{ scholarship }}</b> closes on {{ deadline }}.</p>",
            "sample_data": {"name": "Ada", "scholarship": "STEM Futures", "deadline": "2026-12-01"},
            "actor": "olivia",
        }
        fields.update(overrides)
        return template_create(**fields)

    return make


@pytest.fixture
def data() -> dict[str, Any]:
    return {"name": "Ada", "scholarship": "STEM Futures", "deadline": "2026-12-01"}
