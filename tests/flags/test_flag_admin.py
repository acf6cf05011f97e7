"""The flags screen: all seven flags with value and source, changes by POST with a reason."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User

from flags.models import Flag, FlagChange
from flags.registry import FLAGS
from flags.services import flag_is_on

URL = "/admin/flags/flag/"


@pytest.fixture
def victor(db, client):
    """A staff member who may look at flags but not change them."""
    user = User.objects.create_user("victor", "victor@example.org", "pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_flag"))
    client.force_login(user)
    return client


def test_it_lists_every_flag_even_without_a_row(olivia, settings):
    settings.FLAG_ENV = {"DISABLE_SEND": True}
    response = olivia.get(URL)
    assert response.status_code == 200
    assert not Flag.objects.exists()
    states = {state.name: state for state in response.context["states"]}
    assert set(states) == set(FLAGS)
    assert states["DISABLE_SEND"].source == "env (forced safe)"
    assert states["SAFE_MODE"].source == "default"
    for name in FLAGS:
        assert f'id="flag-{name}"' in response.text


def test_it_changes_a_flag_with_a_reason_as_the_admin_user(olivia, settings):
    settings.FLAG_ENV = {}
    response = olivia.post(URL, {"name": "PROMO_SENDS", "value": "on", "reason": "spring sale"})
    assert response.status_code == 302
    change = FlagChange.objects.get()
    assert (change.name, change.new_value, change.actor, change.reason, change.source) == (
        "PROMO_SENDS",
        True,
        "olivia",
        "spring sale",
        "admin",
    )
    assert flag_is_on("PROMO_SENDS") is True
    page = olivia.get(URL)
    assert "PROMO_SENDS is now on." in page.text


def test_it_refuses_a_change_without_a_reason(olivia):
    response = olivia.post(URL, {"name": "DISABLE_SEND", "value": "off", "reason": "  "})
    assert response.status_code == 302
    assert not FlagChange.objects.exists()
    assert "Flag not changed" in olivia.get(URL).text


def test_it_refuses_an_unknown_flag_without_a_500(olivia):
    response = olivia.post(URL, {"name": "ROOT", "value": "on", "reason": "x"})
    assert response.status_code == 302
    assert not FlagChange.objects.exists()


def test_it_warns_when_the_environment_masks_the_change(olivia, settings):
    settings.FLAG_ENV = {"DISABLE_SEND": True}
    olivia.post(URL, {"name": "DISABLE_SEND", "value": "off", "reason": "go live"})
    assert FlagChange.objects.get().effective_value is True
    assert "the environment forces it on" in olivia.get(URL).text


def test_it_lets_viewers_look_but_not_change(victor):
    assert victor.get(URL).status_code == 200
    response = victor.post(URL, {"name": "DISABLE_SEND", "value": "off", "reason": "x"})
    assert response.status_code == 403
    assert not FlagChange.objects.exists()


def test_it_does_not_offer_the_raw_row_editor(olivia):
    Flag.objects.create(name="SAFE_MODE", value=True)
    response = olivia.get(f"{URL}SAFE_MODE/change/")
    assert response.status_code == 302
    assert response["Location"] == URL


def test_it_shows_the_change_history_read_only(olivia):
    olivia.post(URL, {"name": "SAFE_MODE", "value": "off", "reason": "pilot"})
    change = FlagChange.objects.get()
    listing = olivia.get("/admin/flags/flagchange/")
    assert listing.status_code == 200
    assert "pilot" in listing.text
    detail = olivia.get(f"/admin/flags/flagchange/{change.pk}/change/")
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.text
    assert olivia.get("/admin/flags/flagchange/add/").status_code == 403
