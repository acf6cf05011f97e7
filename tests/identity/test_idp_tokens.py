"""Valid identity-provider tokens are accepted beside our own service-account tokens, with
their role or scopes mapped to ours and the leeway applied to the time claims."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from events.models import Event, EventStatus, OutboxState
from tests.identity.support import AUDIENCE, ISSUER, Idp, bearer_client, post_event

MakeEvent = Callable[..., dict[str, Any]]


def test_it_accepts_an_rs256_token_as_the_subject_of_the_issuer(
    idp: Idp, event_types: Any, make_event: MakeEvent
) -> None:
    response = post_event(idp.token(), make_event())
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "accepted"
    event = Event.objects.get(uid=response.json()["id"])
    assert event.caller == f"idp:{ISSUER}|svc-scholarships"
    assert event.status == EventStatus.ACCEPTED
    assert event.outbox_state == OutboxState.PENDING
    assert event.pending_token == ""


@pytest.mark.parametrize(
    "dropped",
    [("nbf",), ("iat",), ("nbf", "iat")],
    ids=["no nbf (Keycloak, Auth0)", "no iat", "neither"],
)
def test_it_accepts_standard_access_tokens_without_nbf_or_iat(
    dropped: tuple[str, ...], idp: Idp, event_types: Any, make_event: MakeEvent
) -> None:
    token = idp.token(**dict.fromkeys(dropped))
    claims = jwt.decode(token, options={"verify_signature": False})
    assert not set(dropped) & set(claims)
    response = post_event(token, make_event())
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "accepted"


def test_it_accepts_an_es256_token(idp: Idp, event_types: Any, make_event: MakeEvent) -> None:
    response = post_event(idp.token(idp.keys.ec_a), make_event())
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "accepted"


def test_it_refuses_es256_when_only_rs256_is_pinned(
    idp: Idp, settings: Any, event_types: Any, make_event: MakeEvent
) -> None:
    settings.JWT_ALGORITHMS = ["RS256"]
    response = post_event(idp.token(idp.keys.ec_a), make_event())
    assert response.status_code == 401
    assert response.json()["error"] == "alg_not_allowed"


@pytest.mark.parametrize(
    "claims",
    [
        {"roles": ["Reader", "SystemService"]},
        {"roles": None, "role": "SystemService"},
        {"roles": None, "realm_access": {"roles": ["SystemService"]}},
        {"roles": None, "scope": "openid SystemService"},
        {"roles": None, "scope": "openid events:write"},
        {"roles": None, "scp": ["events:write"]},
    ],
    ids=["roles", "role", "realm_access", "scope-role", "scope-events-write", "scp-list"],
)
def test_it_maps_the_role_or_scope_to_events_write(
    claims: dict[str, Any], idp: Idp, event_types: Any, make_event: MakeEvent
) -> None:
    response = post_event(idp.token(**claims), make_event())
    assert response.status_code == 202, response.content


def test_it_lets_a_read_scope_read_but_not_write(
    idp: Idp, event_types: Any, make_event: MakeEvent
) -> None:
    created = post_event(idp.token(), make_event())
    assert created.status_code == 202
    reader = idp.token(roles=None, scope="events:read")
    assert post_event(reader, make_event("evt-2")).status_code == 403
    response = bearer_client(reader).get(f"/api/v1/events/{created.json()['id']}")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "accepted"


def test_the_role_grants_no_suppression_scope_but_the_scope_claim_does(idp: Idp, db: Any) -> None:
    lookup = "/api/v1/suppressions?channel=email&address=a%40example.org"
    with_role = bearer_client(idp.token()).get(lookup)
    with_scope = bearer_client(idp.token(roles=None, scope="suppressions:read")).get(lookup)

    assert with_role.status_code == 403
    assert (with_scope.status_code, with_scope.json()) == (200, {"results": []})


def test_it_hides_one_subjects_events_from_another(
    idp: Idp, event_types: Any, make_event: MakeEvent
) -> None:
    created = post_event(idp.token(), make_event())
    other = idp.token(sub="svc-other")
    response = bearer_client(other).get(f"/api/v1/events/{created.json()['id']}")
    assert response.status_code == 404


def test_it_accepts_an_audience_list_that_contains_ours(
    idp: Idp, event_types: Any, make_event: MakeEvent
) -> None:
    response = post_event(idp.token(aud=["account", AUDIENCE]), make_event())
    assert response.status_code == 202, response.content


def test_it_applies_the_leeway_to_exp_and_nbf(
    idp: Idp, event_types: Any, make_event: MakeEvent
) -> None:
    now = int(time.time())
    just_expired = idp.token(iat=now - 300, nbf=now - 300, exp=now - 10)
    assert post_event(just_expired, make_event("evt-1")).status_code == 202
    almost_valid = idp.token(nbf=now + 10, iat=now + 10)
    assert post_event(almost_valid, make_event("evt-2")).status_code == 202


def test_it_keeps_accepting_our_own_service_account_tokens(
    idp: Idp, alice: Any, make_event: MakeEvent
) -> None:
    response = alice.post_event(make_event())
    assert response.status_code == 202, response.content
    assert Event.objects.get(uid=response.json()["id"]).caller == f"sa:{alice.client_id}"
    assert idp.fetches == 0  # our own tokens never touch the identity provider


def test_it_scopes_idempotency_keys_to_the_subject(
    idp: Idp, event_types: Any, make_event: MakeEvent
) -> None:
    first = post_event(idp.token(), make_event("shared-key"))
    again = post_event(idp.token(), make_event("shared-key"))
    other = post_event(idp.token(sub="svc-other"), make_event("shared-key"))
    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 202)
    assert again.json()["id"] == first.json()["id"]
    assert other.json()["id"] != first.json()["id"]
