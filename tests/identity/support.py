"""The test identity provider (keys, a JWKS served by a real loopback HTTP server from
tests.support.http_stub, a token minter) and webhook partners that sign with the reference
library `standardwebhooks`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from rest_framework.test import APIClient
from standardwebhooks import Webhook

from tests.support.http_stub import HttpStub, StubAnswer

ISSUER = "https://idp.example.test/realms/ops"
AUDIENCE = "comcenter-api"
JWKS_PATH = "/realms/ops/protocol/openid-connect/certs"


@dataclass(frozen=True)
class IdpKey:
    kid: str
    alg: str
    private: Any

    def jwk(self, **overrides: Any) -> dict[str, Any]:
        public = self.private.public_key()
        algorithm = RSAAlgorithm if self.alg == "RS256" else ECAlgorithm
        entry = dict(algorithm.to_jwk(public, as_dict=True))
        entry.update({"kid": self.kid, "alg": self.alg, "use": "sig"}, **overrides)
        return entry

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@dataclass(frozen=True)
class KeyRing:
    rsa_a: IdpKey  # the identity provider's current key
    rsa_b: IdpKey  # its next key (rotation)
    ec_a: IdpKey  # an ES256 key it also publishes in some tests
    attacker: IdpKey  # never published


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Idp:
    """The identity provider: publishes keys on its JWKS server and mints tokens."""

    def __init__(self, stub: HttpStub, keyring: KeyRing) -> None:
        self.stub = stub
        self.keys = keyring
        self.url = f"{stub.url}{JWKS_PATH}"

    # --- the JWKS server ---------------------------------------------------------------

    def publish(self, *keys: IdpKey, delay: float = 0.0) -> None:
        self.stub.default = StubAnswer(200, {"keys": [k.jwk() for k in keys]}, delay=delay)

    def publish_document(self, document: Any) -> None:
        self.stub.default = StubAnswer(200, document)

    def go_down(self, *, delay: float = 0.0) -> None:
        self.stub.default = StubAnswer(503, {"error": "unavailable"}, delay=delay)

    @property
    def fetches(self) -> int:
        return sum(1 for r in self.stub.requests if r.path == JWKS_PATH)

    # --- tokens --------------------------------------------------------------------------

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "svc-scholarships",
            "iat": now,
            "nbf": now - 5,
            "exp": now + 300,
            "roles": ["SystemService"],
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self,
        key: IdpKey | None = None,
        *,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A token signed by `key` (default: the current key); claim=None drops a claim."""
        key = key or self.keys.rsa_a
        header = {"kid": key.kid, **(headers or {})}
        return jwt.encode(self.claims(**claims), key.private, algorithm=key.alg, headers=header)

    def _signing_input(self, header: dict[str, Any], claims: dict[str, Any]) -> str:
        payload = json.dumps(self.claims(**claims)).encode()
        return f"{_b64(json.dumps(header).encode())}.{_b64(payload)}"

    def unsigned_token(self, header: dict[str, Any], **claims: Any) -> str:
        """Header and payload as given and an empty signature (the alg=none shape)."""
        return f"{self._signing_input(header, claims)}."

    def hs256_with_public_key(self, key: IdpKey, **claims: Any) -> str:
        """The classic algorithm-confusion forgery: HS256 keyed with the RSA public key."""
        header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
        signing_input = self._signing_input(header, claims)
        digest = hmac.new(key.public_pem(), signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(digest)}"


def bearer_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def post_event(token: str, body: dict[str, Any]) -> Any:
    return bearer_client(token).post(
        "/api/v1/events", data=json.dumps(body), content_type="application/json"
    )


# --- webhook partners -----------------------------------------------------------------


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class Partner:
    """A partner with its configured secrets, signing like any Standard Webhooks sender."""

    source: str
    secret: str

    def headers(
        self,
        body: str,
        *,
        message_id: str = "msg_2Kx7Yz",
        at: datetime | None = None,
        secret: str | None = None,
    ) -> dict[str, str]:
        at = at or datetime.now(UTC)
        signature = Webhook(secret or self.secret).sign(message_id, at, body)
        return {
            "HTTP_WEBHOOK_ID": message_id,
            "HTTP_WEBHOOK_TIMESTAMP": str(int(at.timestamp())),
            "HTTP_WEBHOOK_SIGNATURE": signature,
        }

    def post(self, body: str, *, source: str | None = None, **headers: str) -> Any:
        return APIClient().post(
            f"/api/v1/webhooks/{source or self.source}",
            data=body,
            content_type="application/json",
            **headers,
        )

    def send(self, body: str, **sign: Any) -> Any:
        return self.post(body, **self.headers(body, **sign))


@dataclass
class Partners:
    acme: Partner
    acme_next_secret: str  # acme's second secret, during a rotation
    globex: Partner


def body_of(make_event: Callable[..., dict[str, Any]], **overrides: Any) -> str:
    event = make_event(**overrides)
    event.pop("idempotency_key")  # the webhook-id is the key
    return json.dumps(event)
