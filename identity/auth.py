"""Bearer authentication for the API.

Two kinds of bearer token are accepted: our own service-account tokens (HS256, issued by
`POST /api/v1/auth/token`) and, when `JWKS_URL` is configured, tokens of the organisation's
identity provider (see `identity/idp.py`). The token's unverified `iss` only picks which
verifier runs; each verifier checks everything itself."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import jwt
from django.conf import settings
from rest_framework import authentication, exceptions, permissions
from rest_framework_simplejwt.tokens import AccessToken

from comcenter.lib.metrics import AUTH_FAILURES
from identity.caller import Caller
from identity.models import ServiceAccount

if TYPE_CHECKING:  # rest_framework.views imports this module through its settings
    from rest_framework.request import Request
    from rest_framework.views import APIView

OWN_ISSUER = "comcenter"

# Whether an account is still active, cached briefly per process so that the ack path does
# not query it on every request; a revocation takes effect within this many seconds.
_ACCOUNT_CACHE_SECONDS = 5.0
_account_cache: dict[str, tuple[float, bool]] = {}


class AuthFailed(exceptions.AuthenticationFailed):
    """A 401 that carries a machine-readable reason (counted by reason in the metrics)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail=detail)
        self.reason_code = reason


def record_auth_failure(reason: str) -> None:
    """Count an authentication failure by reason (metrics hook)."""
    AUTH_FAILURES.labels(reason=reason).inc()


def _account_is_active(client_id: str) -> bool:
    now = time.monotonic()
    hit = _account_cache.get(client_id)
    if hit and hit[0] > now:
        return hit[1]
    active = ServiceAccount.objects.filter(client_id=client_id, is_active=True).exists()
    _account_cache[client_id] = (now + _ACCOUNT_CACHE_SECONDS, active)
    return active


def forget_account(client_id: str) -> None:
    _account_cache.pop(client_id, None)


def issue_access_token(account: ServiceAccount, scopes: list[str]) -> AccessToken:
    token = AccessToken()
    token["sub"] = account.client_id
    token["scope"] = " ".join(scopes)
    token["iss"] = OWN_ISSUER
    token["aud"] = OWN_ISSUER
    return token


def authenticate_own_token(raw: str) -> Caller:
    """Verify one of our HS256 access tokens (signature, exp, iss, aud, type) and the account."""
    jwt_settings = settings.SIMPLE_JWT
    try:
        claims = jwt.decode(
            raw,
            jwt_settings["SIGNING_KEY"],
            algorithms=[jwt_settings["ALGORITHM"]],
            audience=jwt_settings["AUDIENCE"],
            issuer=jwt_settings["ISSUER"],
            options={"require": ["exp", "sub", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthFailed("expired", "The access token has expired.") from exc
    except (jwt.PyJWTError, RecursionError) as exc:
        raise AuthFailed("invalid_token", "The access token is invalid.") from exc
    if claims.get("token_type") != "access":
        raise AuthFailed("invalid_token", "The access token is invalid.")
    client_id = str(claims["sub"])
    if not _account_is_active(client_id):
        raise AuthFailed("revoked", "The service account is unknown or revoked.")
    caller = Caller(
        caller_id=f"sa:{client_id}",
        scopes=frozenset(str(claims.get("scope", "")).split()),
        kind="service_account",
    )
    _remember(raw, caller, float(claims["exp"]), client_id)
    return caller


# Verified service-account tokens by their text: a client reuses one token for every request
# until it expires, so the ack path verifies its signature once, not per request. Revocation
# still applies within _ACCOUNT_CACHE_SECONDS (the account check runs on every hit).
_VERIFIED_MAX = 1024
_verified: dict[str, tuple[float, Caller, str]] = {}


def _remember(raw: str, caller: Caller, exp: float, client_id: str) -> None:
    if len(_verified) >= _VERIFIED_MAX:
        _verified.clear()
    _verified[raw] = (exp, caller, client_id)


def _recall(raw: str) -> Caller | None:
    hit = _verified.get(raw)
    if hit is None:
        return None
    exp, caller, client_id = hit
    if exp <= time.time():
        _verified.pop(raw, None)
        raise AuthFailed("expired", "The access token has expired.")
    if not _account_is_active(client_id):
        raise AuthFailed("revoked", "The service account is unknown or revoked.")
    return caller


def _unverified_claims(raw: str) -> dict[str, Any]:
    try:
        claims = jwt.decode(raw, options={"verify_signature": False})
    except (jwt.PyJWTError, RecursionError) as exc:  # deeply nested JSON: RecursionError
        raise AuthFailed("malformed", "The bearer token is not a well-formed JWT.") from exc
    if not isinstance(claims, dict):
        raise AuthFailed("malformed", "The bearer token is not a well-formed JWT.")
    return claims


def authenticate_bearer(raw: str) -> Caller:
    """Verify a bearer token of either kind; raise AuthFailed with a reason otherwise."""
    if len(raw) > 16384:
        raise AuthFailed("malformed", "The bearer token is too long.")
    cached = _recall(raw)
    if cached is not None:
        return cached
    claims = _unverified_claims(raw)
    if settings.JWKS_URL and claims.get("iss") == settings.JWT_ISSUER:
        from identity.idp import authenticate_idp_token  # idp imports this module

        return authenticate_idp_token(raw)
    if claims.get("iss", OWN_ISSUER) != OWN_ISSUER:
        # Neither ours nor the configured identity provider's (prefix/suffix tricks included);
        # a token without `iss` is left to our own verifier, which refuses it.
        raise AuthFailed("wrong_issuer", "The token's issuer is not accepted here.")
    return authenticate_own_token(raw)


class BearerAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Caller, str] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() != "bearer":
            record_auth_failure("malformed")
            raise AuthFailed("malformed", "Use the header 'Authorization: Bearer <token>'.")
        try:
            return authenticate_bearer(parts[1]), parts[1]
        except AuthFailed as exc:
            record_auth_failure(exc.reason_code)
            raise

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="comcenter"'


def request_caller(request: Request) -> Caller:
    """The authenticated caller of an API request (views behind HasScope always have one)."""
    caller = request.user
    if not isinstance(caller, Caller):
        raise exceptions.NotAuthenticated()
    return caller


class HasScope(permissions.BasePermission):
    """Grants access when the caller's token carries the view's `required_scope`, or the
    scope its `required_scopes` names for the request's method."""

    message = "The token lacks the scope this endpoint needs."

    def has_permission(self, request: Request, view: APIView) -> bool:
        caller = request.user
        if not isinstance(caller, Caller):
            return False
        by_method = getattr(view, "required_scopes", None)
        if by_method is not None:
            # A method without a row (PUT, PATCH) is answered 405 by the view after this.
            required = by_method.get(request.method)
        else:
            required = getattr(view, "required_scope", None)
        return required is None or caller.has_scope(required)
