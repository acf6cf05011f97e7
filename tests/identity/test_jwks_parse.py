"""Which keys of a JWKS document we use: signature keys whose type fits a pinned algorithm,
public members only, RSA of at least 2048 bits."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from identity.jwks import JwksError, jwks_parse
from tests.identity.support import KeyRing

PINNED = ["RS256", "ES256"]


def test_it_keeps_signature_keys_of_pinned_algorithms(keyring: KeyRing) -> None:
    document = {"keys": [keyring.rsa_a.jwk(), keyring.ec_a.jwk()]}
    keys = jwks_parse(document, algorithms=PINNED)
    assert {kid: key.alg for kid, key in keys.items()} == {
        "idp-key-a": "RS256",
        "idp-key-ec": "ES256",
    }


def test_it_infers_the_algorithm_of_a_key_without_alg(keyring: KeyRing) -> None:
    entry = keyring.ec_a.jwk()
    del entry["alg"]
    assert jwks_parse({"keys": [entry]}, algorithms=PINNED)["idp-key-ec"].alg == "ES256"


@pytest.mark.parametrize(
    "change",
    [
        {"use": "enc"},
        {"key_ops": ["encrypt"]},
        {"alg": "RS512"},
        {"alg": "ES256"},  # an RSA key claiming an EC algorithm
        {"kty": "EC"},
        {"kid": ""},
        {"kid": "k" * 257},
        {"kid": 7},
    ],
    ids=[
        "enc",
        "key-ops",
        "other-alg",
        "alg-kty-mismatch",
        "kty-lie",
        "no-kid",
        "long-kid",
        "int-kid",
    ],
)
def test_it_skips_keys_we_must_not_verify_with(change: dict[str, Any], keyring: KeyRing) -> None:
    document = {"keys": [keyring.rsa_a.jwk(**change), keyring.rsa_b.jwk()]}
    assert set(jwks_parse(document, algorithms=PINNED)) == {"idp-key-b"}


def test_it_skips_rsa_keys_under_2048_bits() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    entry = {**RSAAlgorithm.to_jwk(weak, as_dict=True), "kid": "weak", "alg": "RS256"}
    with pytest.raises(JwksError):
        jwks_parse({"keys": [entry]}, algorithms=PINNED)


def test_it_uses_only_the_public_members(keyring: KeyRing) -> None:
    private = RSAAlgorithm.to_jwk(keyring.rsa_a.private, as_dict=True)
    entry = {**private, "kid": "published-by-mistake", "alg": "RS256"}
    del entry["key_ops"]  # PyJWT marks a private JWK ["sign"], which we would skip anyway
    assert "d" in entry
    key = jwks_parse({"keys": [entry]}, algorithms=PINNED)["published-by-mistake"].key
    assert isinstance(key, rsa.RSAPublicKey)


def test_it_keeps_the_first_key_of_a_repeated_kid(keyring: KeyRing) -> None:
    document = {"keys": [keyring.rsa_a.jwk(), keyring.attacker.jwk()]}
    key = jwks_parse(document, algorithms=PINNED)["idp-key-a"].key
    assert key.public_numbers() == keyring.rsa_a.private.public_key().public_numbers()


@pytest.mark.parametrize(
    "document",
    [[], {"keys": "none"}, {"keys": []}, {"keys": [{"kty": "oct", "kid": "h", "k": "c2Vj"}]}],
    ids=["list", "keys-not-list", "empty", "only-symmetric"],
)
def test_it_refuses_a_document_without_usable_keys(document: Any) -> None:
    with pytest.raises(JwksError):
        jwks_parse(document, algorithms=PINNED)


def test_it_honours_the_pinned_algorithms(keyring: KeyRing) -> None:
    document = {"keys": [keyring.rsa_a.jwk(), keyring.ec_a.jwk()]}
    assert set(jwks_parse(document, algorithms=["RS256"])) == {"idp-key-a"}
