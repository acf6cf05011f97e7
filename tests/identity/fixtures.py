"""The identity provider of the tests, registered for the whole suite in tests/conftest.py (the
delivery tests use it too): real RSA and EC keys generated once per test run, a real JWKS
HTTP server on loopback, settings pointing at it. Each test starts with a process that has
never seen a key (key_source_forget)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pytest_django.fixtures import Settings as SettingsWrapper

from identity.jwks import key_source_forget
from tests.identity.support import AUDIENCE, ISSUER, Idp, IdpKey, KeyRing
from tests.support.http_stub import HttpStub


@pytest.fixture(scope="session")
def keyring() -> KeyRing:
    def rsa_key() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    return KeyRing(
        rsa_a=IdpKey("idp-key-a", "RS256", rsa_key()),
        rsa_b=IdpKey("idp-key-b", "RS256", rsa_key()),
        ec_a=IdpKey("idp-key-ec", "ES256", ec.generate_private_key(ec.SECP256R1())),
        attacker=IdpKey("idp-key-a", "RS256", rsa_key()),
    )


@pytest.fixture
def idp(settings: SettingsWrapper, http_stub: HttpStub, keyring: KeyRing) -> Iterator[Idp]:
    provider = Idp(http_stub, keyring)
    provider.publish(keyring.rsa_a, keyring.ec_a)
    settings.JWKS_URL = provider.url
    settings.JWT_ISSUER = ISSUER
    settings.JWT_AUDIENCE = AUDIENCE
    settings.JWT_REQUIRED_ROLE = "SystemService"
    settings.JWT_ALGORITHMS = ["RS256", "ES256"]
    settings.JWT_LEEWAY = 30
    settings.JWKS_FETCH_TIMEOUT = 0.5
    settings.JWKS_REFETCH_COOLDOWN = 0.0
    settings.JWKS_STALE_GRACE_HOURS = 24
    key_source_forget()
    yield provider
    key_source_forget()
