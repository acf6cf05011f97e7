"""POST /api/v1/auth/token: OAuth2 client credentials."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlencode

import pytest
from rest_framework.test import APIClient

from identity.services import service_account_revoke


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


def exchange(client: APIClient, **fields: str):
    return client.post(
        "/api/v1/auth/token",
        data=urlencode(fields),
        content_type="application/x-www-form-urlencoded",
    )


def test_it_issues_a_bearer_token_for_form_credentials(alice, anon, make_event):
    response = exchange(
        anon, grant_type="client_credentials", client_id=alice.client_id, client_secret=alice.secret
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["scope"] == "events:read events:write"
    assert response["Cache-Control"] == "no-store"
    anon.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access_token']}")
    posted = anon.post(
        "/api/v1/events", data=json.dumps(make_event()), content_type="application/json"
    )
    assert posted.status_code == 202


def test_it_accepts_json_credentials(alice, anon):
    response = anon.post(
        "/api/v1/auth/token",
        data=json.dumps(
            {
                "grant_type": "client_credentials",
                "client_id": alice.client_id,
                "client_secret": alice.secret,
            }
        ),
        content_type="application/json",
    )
    assert response.status_code == 200


def test_it_accepts_http_basic_credentials(alice, anon):
    basic = base64.b64encode(f"{alice.client_id}:{alice.secret}".encode()).decode()
    anon.credentials(HTTP_AUTHORIZATION=f"Basic {basic}")
    response = exchange(anon, grant_type="client_credentials")
    assert response.status_code == 200


def test_it_narrows_scopes_on_request(alice, anon):
    response = exchange(
        anon,
        grant_type="client_credentials",
        client_id=alice.client_id,
        client_secret=alice.secret,
        scope="events:read",
    )
    assert response.json()["scope"] == "events:read"


def test_it_refuses_scopes_the_client_lacks(reader, anon):
    response = exchange(
        anon,
        grant_type="client_credentials",
        client_id=reader.client_id,
        client_secret=reader.secret,
        scope="events:write",
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_it_answers_401_for_a_wrong_secret(alice, anon):
    response = exchange(
        anon, grant_type="client_credentials", client_id=alice.client_id, client_secret="nope"
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_it_answers_400_for_another_grant_type(alice, anon):
    response = exchange(anon, grant_type="password", client_id=alice.client_id)
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_it_answers_400_for_deeply_nested_json(anon):
    response = anon.post(
        "/api/v1/auth/token", data="[" * 20000 + "]" * 20000, content_type="application/json"
    )
    assert response.status_code == 400


def test_it_refuses_a_revoked_account_and_its_tokens(alice, anon, make_event):
    service_account_revoke(account=alice.account, actor="test")
    response = exchange(
        anon, grant_type="client_credentials", client_id=alice.client_id, client_secret=alice.secret
    )
    assert response.status_code == 401
    assert alice.post_event(make_event()).status_code == 401


def test_it_never_stores_the_secret_in_clear(alice):
    alice.account.refresh_from_db()
    assert alice.secret not in alice.account.secret_hash
    assert len(alice.account.secret_hash) == 64
