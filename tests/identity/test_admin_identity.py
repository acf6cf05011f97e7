"""The operator view of the JWKS state: the key ids it holds and a "fetch now" action."""

from __future__ import annotations

from typing import Any

from django.contrib.admin import AdminSite
from django.contrib.messages import get_messages
from django.contrib.messages.storage.fallback import FallbackStorage
from django.test import RequestFactory

from identity.admin import JwksStateAdmin
from identity.models import JwksState
from tests.identity.support import Idp


def admin_request() -> Any:
    request = RequestFactory().post("/admin/identity/jwksstate/")
    request.session = {}
    request._messages = FallbackStorage(request)
    return request


def test_it_fetches_now_and_lists_the_key_ids(idp: Idp, db: Any) -> None:
    model_admin = JwksStateAdmin(JwksState, AdminSite())
    request = admin_request()
    model_admin.fetch_now(request, JwksState.objects.all())
    state = JwksState.objects.get(url=idp.url)
    assert model_admin.key_ids(state) == "idp-key-a, idp-key-ec"
    assert "saved" in str(next(iter(get_messages(request))))


def test_it_warns_when_the_fetch_fails(idp: Idp, db: Any) -> None:
    idp.go_down()
    model_admin = JwksStateAdmin(JwksState, AdminSite())
    request = admin_request()
    model_admin.fetch_now(request, JwksState.objects.none())
    assert "could not be fetched" in str(next(iter(get_messages(request))))
    assert JwksState.objects.get(url=idp.url).last_error
