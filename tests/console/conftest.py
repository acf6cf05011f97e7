"""Fixtures of the console tests: staff in a role, and the template builder of the
template tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from tests.templates.conftest import make_template

__all__ = ["make_template", "member"]


@pytest.fixture
def member(db: Any) -> Callable[[str | None, str], Client]:
    """A logged-in client of a staff user in the group `role` (None: in no group)."""

    def make(role: str | None, name: str) -> Client:
        user = User.objects.create_user(name, is_staff=True)
        if role:
            user.groups.add(Group.objects.get(name=role))
        client = Client()
        client.force_login(user)
        return client

    return make
