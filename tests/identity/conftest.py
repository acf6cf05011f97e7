"""Fixtures of the identity tests: webhook partners with their secrets (the identity provider
itself is in tests/identity/fixtures.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.identity.support import Partner, Partners, new_secret


@pytest.fixture
def partners(settings: Any, event_types: Any) -> Partners:
    acme, acme_next, globex = new_secret(), new_secret(), new_secret()
    settings.WEBHOOK_SECRETS_RAW = f"acme={acme}, globex={globex},acme={acme_next}"
    return Partners(Partner("acme", acme), acme_next, Partner("globex", globex))
