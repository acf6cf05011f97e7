"""The view-only defect of issue 12: template switches and service-account rotation are
offered only to who may change them, and a new secret is shown once on a page, never put
into Django's message storage (a signed, unencrypted cookie)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User

from audit.models import AuditRecord
from identity.models import ServiceAccount
from identity.services import service_account_check, service_account_create

ACCOUNTS = "/admin/identity/serviceaccount/"
TEMPLATES = "/admin/templates/template/"


@pytest.fixture
def victor(db: Any, client: Any) -> Any:
    """Staff who may view templates and service accounts, and change nothing."""
    user = User.objects.create_user("victor", "victor@example.org", "pw", is_staff=True)
    for codename in ("view_template", "view_serviceaccount"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(user)
    return client


@pytest.fixture
def account(db: Any) -> tuple[ServiceAccount, str]:
    return service_account_create(name="crm", scopes=["events:write"])


def test_it_offers_no_change_action_to_a_viewer(
    victor: Any, account: Any, make_template: Any
) -> None:
    make_template()
    for url in (ACCOUNTS, TEMPLATES):
        response = victor.get(url)
        assert response.status_code == 200
        assert response.context["action_form"] is None, url  # no action offered at all


@pytest.mark.parametrize("action", ["whitelist", "unwhitelist", "enable", "disable"])
def test_it_refuses_a_viewer_s_posted_template_switch(
    victor: Any, make_template: Any, action: str
) -> None:
    template = make_template(whitelisted=action == "unwhitelist", enabled=action != "enable")
    before = (template.whitelisted, template.enabled, AuditRecord.objects.count())

    response = victor.post(TEMPLATES, {"action": action, "_selected_action": [template.pk]})

    template.refresh_from_db()
    assert response.status_code == 200  # the list again, with "No action selected"
    assert (template.whitelisted, template.enabled, AuditRecord.objects.count()) == before


def test_it_refuses_a_viewer_s_posted_rotation(victor: Any, account: Any) -> None:
    row, secret = account

    response = victor.post(ACCOUNTS, {"action": "rotate_secret", "_selected_action": [row.pk]})

    assert response.status_code == 200
    assert service_account_check(client_id=row.client_id, client_secret=secret) is not None
    assert not AuditRecord.objects.filter(kind="service_account.rotated").exists()


def test_it_shows_a_rotated_secret_once_on_a_page_and_not_in_a_cookie(
    olivia: Any, account: Any
) -> None:
    row, old_secret = account

    response = olivia.post(ACCOUNTS, {"action": "rotate_secret", "_selected_action": [row.pk]})

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    [(shown_account, new_secret)] = response.context["secrets"]
    assert shown_account.pk == row.pk
    assert new_secret in response.text
    assert service_account_check(client_id=row.client_id, client_secret=new_secret) is not None
    assert service_account_check(client_id=row.client_id, client_secret=old_secret) is None
    assert all(new_secret not in morsel.value for morsel in response.cookies.values())
    assert all(new_secret not in morsel.value for morsel in olivia.cookies.values())
    assert new_secret not in olivia.get(ACCOUNTS).text
    assert AuditRecord.objects.filter(kind="service_account.rotated", actor="olivia").count() == 1


def test_it_shows_a_new_account_s_secret_once_on_a_page(olivia: Any) -> None:
    response = olivia.post(f"{ACCOUNTS}add/", {"name": "billing", "scopes": ["events:write"]})

    assert response.status_code == 200
    [(created, secret)] = response.context["secrets"]
    assert created.name == "billing"
    assert service_account_check(client_id=created.client_id, client_secret=secret) is not None
    assert all(secret not in morsel.value for morsel in olivia.cookies.values())


def test_it_shows_an_account_page_without_save_buttons(olivia: Any, account: Any) -> None:
    row, _secret = account

    response = olivia.get(f"{ACCOUNTS}{row.pk}/change/")

    assert response.status_code == 200
    assert 'name="_save"' not in response.text
    assert olivia.post(f"{ACCOUNTS}{row.pk}/change/", {"name": "renamed"}).status_code == 403
    row.refresh_from_db()
    assert row.name == "crm"
