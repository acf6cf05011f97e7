"""Fixtures of the console tests: the template builder of the template tests."""

from __future__ import annotations

from tests.templates.conftest import make_template

__all__ = ["make_template"]
