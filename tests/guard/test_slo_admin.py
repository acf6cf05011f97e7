"""The SLO report page in the admin: shown to those who may view incidents, refused to others."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from guard.measurements import measurement_add

pytestmark = pytest.mark.usefixtures("store")


def test_it_shows_the_ledger_to_an_operator(olivia) -> None:
    measurement_add({"answers": 200, "errors": 1})
    response = olivia.get(reverse("admin:guard_slo_report"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "5xx_ratio" in page
    assert "budget used 100.0 % left 0.0 %" in page  # 0.5 % of a 0.5 % budget


def test_it_refuses_staff_without_the_view_permission(client) -> None:
    user = get_user_model().objects.create_user(
        "mallory", password="pw-mallory-1234", is_staff=True
    )
    client.force_login(user)
    assert client.get(reverse("admin:guard_slo_report")).status_code == 403
