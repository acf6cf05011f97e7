"""Every forgery and misuse of an identity-provider token is refused with 401 and counted by
its reason; a valid identity without the role gets 403. Nothing is stored for any of them."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from events.models import Event
from tests.identity.support import ISSUER, Idp, post_event


def failures(reason: str) -> float:
    return REGISTRY.get_sample_value("comcenter_auth_failures_total", {"reason": reason}) or 0.0


def _deeply_nested(idp: Idp) -> str:
    header = base64.urlsafe_b64encode(b'{"alg":"RS256","kid":"idp-key-a"}').decode().rstrip("=")
    payload = base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode().rstrip("=")
    return f"{header}.{payload}.c2ln"


def _now() -> int:
    return int(time.time())


ATTACKS: dict[str, tuple[Callable[[Idp], str], str]] = {
    "alg none": (
        lambda idp: idp.unsigned_token({"alg": "none", "typ": "JWT", "kid": "idp-key-a"}),
        "alg_not_allowed",
    ),
    "alg None (capitalised)": (
        lambda idp: idp.unsigned_token({"alg": "None", "kid": "idp-key-a"}),
        "alg_not_allowed",
    ),
    "HS256 signed with the RSA public key": (
        lambda idp: idp.hs256_with_public_key(idp.keys.rsa_a),
        "alg_not_allowed",
    ),
    "RS384, not pinned": (
        lambda idp: idp.token(headers={"alg": "RS384"}),
        "alg_not_allowed",
    ),
    "another key under the known kid": (
        lambda idp: idp.token(idp.keys.attacker),
        "bad_signature",
    ),
    "an ES256 token naming the RSA key's kid": (
        lambda idp: idp.token(idp.keys.ec_a, headers={"kid": idp.keys.rsa_a.kid}),
        "key_mismatch",
    ),
    "a kid the JWKS does not publish": (
        lambda idp: idp.token(idp.keys.attacker, headers={"kid": "attacker-key"}),
        "unknown_kid",
    ),
    "expired beyond the leeway": (
        lambda idp: idp.token(iat=_now() - 400, nbf=_now() - 400, exp=_now() - 31),
        "expired",
    ),
    "nbf in the future": (lambda idp: idp.token(nbf=_now() + 120), "not_yet_valid"),
    "iat in the future": (lambda idp: idp.token(iat=_now() + 120), "not_yet_valid"),
    "wrong aud": (lambda idp: idp.token(aud="another-api"), "wrong_audience"),
    "aud list without ours": (
        lambda idp: idp.token(aud=["another-api", "comcenter-api-x"]),
        "wrong_audience",
    ),
    "missing aud": (lambda idp: idp.token(aud=None), "missing_claim"),
    "iss with a suffix": (lambda idp: idp.token(iss=ISSUER + ".evil.example"), "wrong_issuer"),
    "iss with a trailing slash": (lambda idp: idp.token(iss=ISSUER + "/"), "wrong_issuer"),
    "iss prefix only": (lambda idp: idp.token(iss=ISSUER[:-3]), "wrong_issuer"),
    "iss behind another host": (
        lambda idp: idp.token(iss="https://evil.example/" + ISSUER),
        "wrong_issuer",
    ),
    "missing exp": (lambda idp: idp.token(exp=None), "missing_claim"),
    "nbf as a string": (lambda idp: idp.token(nbf=str(_now())), "malformed"),
    "iat as a boolean": (lambda idp: idp.token(iat=True), "malformed"),
    "missing sub": (lambda idp: idp.token(sub=None), "missing_claim"),
    "exp as a string": (lambda idp: idp.token(exp=str(_now() + 300)), "malformed"),
    "exp of 400 digits": (lambda idp: idp.token(exp=10**400), "malformed"),
    "jku header": (
        lambda idp: idp.token(headers={"jku": "https://evil.example/jwks.json"}),
        "forbidden_header",
    ),
    "x5u header": (
        lambda idp: idp.token(headers={"x5u": "https://evil.example/cert.pem"}),
        "forbidden_header",
    ),
    "x5c header": (
        lambda idp: idp.token(headers={"x5c": ["MIIBIjANBgkqh"]}),
        "forbidden_header",
    ),
    "embedded jwk header (attacker's own key)": (
        lambda idp: idp.token(idp.keys.attacker, headers={"jwk": idp.keys.attacker.jwk()}),
        "forbidden_header",
    ),
    # PyJWT's header parse already refuses a critical extension it does not know.
    "crit header": (lambda idp: idp.token(headers={"crit": ["exp"]}), "malformed"),
    "a 10 KB kid": (lambda idp: idp.token(headers={"kid": "k" * 10240}), "malformed"),
    "no kid": (lambda idp: idp.unsigned_token({"alg": "RS256"}) + "c2ln", "malformed"),
    "not a JWT": (lambda idp: "not.a.jwt", "malformed"),
    "5,000-deep nested payload": (_deeply_nested, "malformed"),
    "RS256 token claiming our own issuer": (
        lambda idp: idp.token(idp.keys.attacker, iss="comcenter", aud="comcenter"),
        "invalid_token",
    ),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_it_refuses_the_attack_with_401(
    attack: str, idp: Idp, event_types: Any, make_event: Callable[..., dict[str, Any]]
) -> None:
    build, reason = ATTACKS[attack]
    before = failures(reason)
    response = post_event(build(idp), make_event())
    assert response.status_code == 401, response.content
    assert response.json()["error"] == reason
    assert failures(reason) == before + 1
    assert not Event.objects.exists()


def test_it_answers_403_to_a_valid_identity_without_the_role(
    idp: Idp, event_types: Any, make_event: Callable[..., dict[str, Any]]
) -> None:
    before = failures("missing_role")
    response = post_event(idp.token(roles=["Reader"], scope="openid profile"), make_event())
    assert response.status_code == 403, response.content
    assert failures("missing_role") == before + 1
    assert not Event.objects.exists()


def test_it_never_echoes_the_token_or_its_claims(idp: Idp, event_types: Any) -> None:
    # The 401 names the reason, never echoes the token or its claims back.
    token = idp.token(aud="another-api", sub="svc-secret-subject")
    response = post_event(token, {"event_type": "deadline_soon"})
    assert response.status_code == 401
    text = json.dumps(response.json())
    assert "svc-secret-subject" not in text
    assert token not in text
