"""Tokens of the organisation's identity provider, verified against its JWKS (docs/identity.md).

The unverified `iss` routed the token here (identity/auth.py); everything is checked again:

- header: `alg` pinned to JWT_ALGORITHMS (never `none` or HS*), and it must be the `alg` of
  the key its `kid` names; no `jku`/`x5u`/`x5c`/`jwk` (keys are never taken from the token),
  no `crit`/`b64`; `kid` required, at most 256 characters;
- claims: `iss` equal to JWT_ISSUER, `aud` containing JWT_AUDIENCE, `exp` and `sub` present;
  `exp` checked with JWT_LEEWAY, and `nbf` and `iat` likewise when the token has them (RFC 7519
  makes both optional; Keycloak's and Auth0's access tokens carry no `nbf`). A present but
  malformed one (not a number) is refused as malformed;
- scopes: the JWT_REQUIRED_ROLE (in `roles`, `role`, `realm_access.roles`, `scope` or `scp`)
  grants `events:write` and `events:read`; our scopes (those two, `suppressions:read`,
  `suppressions:write`) in `scope` or `scp` are granted as they are. A valid token with
  neither gets 403.

Receive-and-queue: when no usable key can be had (JWKS unreachable and no last-known-good key
within the grace, a `kid` not seen while the JWKS is unreachable, or a `kid` our keys do not
list while the refetch cool-down forbids fetching them again), a token whose claims pass
every check above is let in as an `auth_pending` caller that may only submit events. The
event is stored but not dispatched; `events.pending` has it verified (`pending_token_verdict`)
once keys are back, checking `exp` against the time the event was received, not the time of
verification.
"""

from __future__ import annotations

import binascii
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import jwt
from django.conf import settings
from jwt.utils import base64url_decode
from rest_framework.exceptions import PermissionDenied

from identity.auth import AuthFailed, record_auth_failure
from identity.caller import Caller
from identity.jwks import MAX_KID_LENGTH, KeyStatus, SigningKey, key_source
from identity.models import EVENT_SCOPES, SCOPES

log = logging.getLogger(__name__)

FORBIDDEN_HEADERS = ("jku", "x5u", "x5c", "jwk", "crit", "b64")
REQUIRED_CLAIMS = ("iss", "aud", "exp", "sub")
ACCEPTED_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})
CALLER_MAX_LENGTH = 300  # the length of Event.caller


class IdpTokenInvalid(Exception):
    """The token fails a check; `reason` is the metric label and the API error code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class IdpVerification:
    caller_id: str
    scopes: frozenset[str]
    # False: every claim passed but no key could be had to check the signature.
    verified: bool


def idp_token_verify(*, raw: str, at: float) -> IdpVerification:
    """Check a token as of `at` (epoch seconds); IdpTokenInvalid when it fails.

    Its `kid` is refused as unknown only by keys fetched at or after `at`: a token checked
    later (an auth_pending one) is judged by keys fetched since it arrived."""
    alg, kid = _checked_header(_segment(raw, 0))
    claims = _segment(raw, 1)
    caller_id = _checked_claims(claims, at=at)
    scopes = scopes_from_claims(claims)
    lookup = key_source().lookup(kid, listed_since=at)
    if lookup.status is KeyStatus.UNAVAILABLE:
        return IdpVerification(caller_id=caller_id, scopes=scopes, verified=False)
    if lookup.status is KeyStatus.UNKNOWN or lookup.key is None:
        raise IdpTokenInvalid(
            "unknown_kid", "The identity provider publishes no key with this kid."
        )
    if lookup.key.alg != alg:
        raise IdpTokenInvalid(
            "key_mismatch", f"The key with this kid is for {lookup.key.alg}, not {alg}."
        )
    _check_signature(raw, lookup.key)
    return IdpVerification(caller_id=caller_id, scopes=scopes, verified=True)


def authenticate_idp_token(raw: str) -> Caller:
    """The caller of an identity-provider token (called by identity.auth.BearerAuthentication).

    AuthFailed (401) for an invalid token, PermissionDenied (403) for a valid one without the
    role. An unverified caller is let in with `auth_pending`: the intake bounds how many of
    its events it holds (AUTH_PENDING_MAX_PER_ISSUER)."""
    try:
        result = idp_token_verify(raw=raw, at=time.time())
    except IdpTokenInvalid as exc:
        raise AuthFailed(exc.reason, exc.detail) from None
    if not result.scopes:
        record_auth_failure("missing_role")
        raise PermissionDenied(
            f"The token carries neither the role {settings.JWT_REQUIRED_ROLE!r} "
            "nor the scope events:write or events:read."
        )
    if result.verified:
        return Caller(caller_id=result.caller_id, scopes=result.scopes, kind="idp")
    log.debug("identity provider keys unavailable: the event waits for verification")
    # An unverified caller may only submit (into auth_pending), never read: reading would
    # show a forger the events of the subject it names.
    return Caller(
        caller_id=result.caller_id,
        scopes=result.scopes & {"events:write"},
        kind="idp",
        auth_pending=True,
        raw_token=raw,
    )


def scopes_from_claims(claims: dict[str, Any]) -> frozenset[str]:
    """Our scopes for a token's claims (see the module docstring)."""
    roles: set[str] = set()
    for value in (claims.get("roles"), claims.get("role")):
        roles |= _strings(value)
    realm_access = claims.get("realm_access")
    if isinstance(realm_access, dict):
        roles |= _strings(realm_access.get("roles"))
    scopes: set[str] = set()
    for value in (claims.get("scope"), claims.get("scp")):
        scopes |= _strings(value.split() if isinstance(value, str) else value)
    granted = scopes & set(SCOPES)
    role = settings.JWT_REQUIRED_ROLE
    if role and (role in roles or role in scopes):
        granted |= set(EVENT_SCOPES)
    return frozenset(granted)


def _strings(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, list):
        return {item for item in value if isinstance(item, str)}
    return set()


def _segment(raw: str, index: int) -> dict[str, Any]:
    """The JSON object of the token's header (0) or payload (1), unverified."""
    parts = raw.split(".")
    if len(parts) != 3:
        raise IdpTokenInvalid("malformed", "The token is not a compact JWS (three parts).")
    try:
        value = json.loads(base64url_decode(parts[index].encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error, RecursionError):
        raise IdpTokenInvalid("malformed", "The token is not valid base64url JSON.") from None
    if not isinstance(value, dict):
        raise IdpTokenInvalid("malformed", "The token's header and payload must be objects.")
    return value


def _checked_header(header: dict[str, Any]) -> tuple[str, str]:
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in settings.JWT_ALGORITHMS:
        raise IdpTokenInvalid(
            "alg_not_allowed", f"Only {', '.join(settings.JWT_ALGORITHMS)} tokens are accepted."
        )
    present = [name for name in FORBIDDEN_HEADERS if name in header]
    if present:
        raise IdpTokenInvalid(
            "forbidden_header", f"The token header may not carry {', '.join(present)}."
        )
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPES):
        raise IdpTokenInvalid("malformed", "The token's typ is not an access token type.")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise IdpTokenInvalid("malformed", "The token header needs a kid.")
    if len(kid) > MAX_KID_LENGTH:
        raise IdpTokenInvalid("malformed", f"The kid is longer than {MAX_KID_LENGTH} characters.")
    return alg, kid


def _checked_claims(claims: dict[str, Any], *, at: float) -> str:
    """Every claim check that needs no key; returns the caller id."""
    for name in REQUIRED_CLAIMS:
        if claims.get(name) is None:
            raise IdpTokenInvalid("missing_claim", f"The token has no {name!r} claim.")
    if claims["iss"] != settings.JWT_ISSUER:
        raise IdpTokenInvalid("wrong_issuer", "The token's issuer is not the configured one.")
    aud = claims["aud"]
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise IdpTokenInvalid("malformed", "The aud claim must be a string or a list of them.")
    if settings.JWT_AUDIENCE not in audiences:
        raise IdpTokenInvalid("wrong_audience", "The token is not meant for this service.")
    leeway = settings.JWT_LEEWAY
    if _seconds(claims, "exp") <= at - leeway:
        raise IdpTokenInvalid("expired", "The token has expired.")
    if "nbf" in claims and _seconds(claims, "nbf") > at + leeway:
        raise IdpTokenInvalid("not_yet_valid", "The token is not valid yet (nbf).")
    if "iat" in claims and _seconds(claims, "iat") > at + leeway:
        raise IdpTokenInvalid("not_yet_valid", "The token was issued in the future (iat).")
    sub = claims["sub"]
    if not isinstance(sub, str) or not sub.strip():
        raise IdpTokenInvalid("malformed", "The sub claim must be a non-empty string.")
    caller_id = f"{idp_caller_prefix()}{sub}"
    if len(caller_id) > CALLER_MAX_LENGTH:
        raise IdpTokenInvalid("malformed", "The sub claim is too long.")
    return caller_id


def _seconds(claims: dict[str, Any], name: str) -> float:
    value = claims[name]
    try:
        seconds = float(value) if isinstance(value, (int, float)) else math.nan
    except OverflowError:  # an integer of hundreds of digits
        seconds = math.nan
    if isinstance(value, bool) or not math.isfinite(seconds):
        raise IdpTokenInvalid("malformed", f"The {name} claim must be a number of seconds.")
    return seconds


_DECODE_ERRORS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.InvalidSignatureError, "bad_signature"),
    (jwt.InvalidAlgorithmError, "alg_not_allowed"),
    (jwt.InvalidAudienceError, "wrong_audience"),
    (jwt.InvalidIssuerError, "wrong_issuer"),
    (jwt.MissingRequiredClaimError, "missing_claim"),
    (jwt.InvalidKeyError, "key_mismatch"),
)


def _check_signature(raw: str, key: SigningKey) -> None:
    """The signature with PyJWT, which also repeats the iss/aud/required-claim checks; the
    time claims were checked by _checked_claims against the caller's `at`."""
    try:
        jwt.decode(
            raw,
            key=key.key,
            algorithms=[key.alg],
            audience=settings.JWT_AUDIENCE,
            issuer=settings.JWT_ISSUER,
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "require": list(REQUIRED_CLAIMS),
            },
        )
    except jwt.PyJWTError as exc:
        reason = next((r for kind, r in _DECODE_ERRORS if isinstance(exc, kind)), "malformed")
        detail = "The token's signature does not verify." if reason == "bad_signature" else str(exc)
        raise IdpTokenInvalid(reason, detail) from None


def idp_caller_prefix() -> str:
    """The start of every caller id of the configured identity provider's tokens."""
    return f"idp:{settings.JWT_ISSUER}|"
