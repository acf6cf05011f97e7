"""Writes of the identity app: service accounts (create, rotate, revoke) and their check."""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime

from django.db import transaction

from audit.services import audit_append
from comcenter.lib.hashing import sha256_hex
from identity.auth import forget_account
from identity.models import SCOPES, ServiceAccount

SECRET_PREFIX = "ccs_"


class ScopeError(ValueError):
    pass


def _validate_scopes(scopes: list[str]) -> list[str]:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ScopeError(f"unknown scopes {unknown}; known: {list(SCOPES)}")
    if not scopes:
        raise ScopeError(f"at least one scope is needed; known: {list(SCOPES)}")
    return sorted(set(scopes))


def _new_secret() -> tuple[str, str]:
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    return secret, sha256_hex(secret)


def service_account_create(
    *, name: str, scopes: list[str], actor: str = ""
) -> tuple[ServiceAccount, str]:
    """Create a machine client; returns it with its secret, which is not stored."""
    scopes = _validate_scopes(scopes)
    secret, secret_hash = _new_secret()
    with transaction.atomic():
        account = ServiceAccount.objects.create(
            name=name,
            client_id="cc_" + secrets.token_hex(12),
            secret_hash=secret_hash,
            scopes=scopes,
        )
        audit_append(
            kind="service_account.created",
            actor=actor,
            data={"client_id": account.client_id, "name": name, "scopes": scopes},
        )
    return account, secret


def service_account_ensure(
    *, name: str, client_id: str, secret: str, scopes: list[str], actor: str = ""
) -> ServiceAccount:
    """Create or update an account with given credentials (demo data from the environment)."""
    scopes = _validate_scopes(scopes)
    with transaction.atomic():
        account, created = ServiceAccount.objects.update_or_create(
            client_id=client_id,
            defaults={
                "name": name,
                "secret_hash": sha256_hex(secret),
                "scopes": scopes,
                "is_active": True,
                "revoked_at": None,
            },
        )
        audit_append(
            kind="service_account.created" if created else "service_account.updated",
            actor=actor,
            data={"client_id": client_id, "name": name, "scopes": scopes},
        )
    forget_account(client_id)
    return account


def service_account_rotate_secret(*, account: ServiceAccount, actor: str = "") -> str:
    secret, secret_hash = _new_secret()
    with transaction.atomic():
        account.secret_hash = secret_hash
        account.rotated_at = datetime.now().astimezone()
        account.save(update_fields=["secret_hash", "rotated_at"])
        audit_append(
            kind="service_account.rotated", actor=actor, data={"client_id": account.client_id}
        )
    return secret


def service_account_revoke(*, account: ServiceAccount, actor: str = "") -> None:
    with transaction.atomic():
        account.is_active = False
        account.revoked_at = datetime.now().astimezone()
        account.save(update_fields=["is_active", "revoked_at"])
        audit_append(
            kind="service_account.revoked", actor=actor, data={"client_id": account.client_id}
        )
    forget_account(account.client_id)


def service_account_check(*, client_id: str, client_secret: str) -> ServiceAccount | None:
    """The active account these credentials belong to, or None (constant-time compare)."""
    account = ServiceAccount.objects.filter(client_id=client_id, is_active=True).first()
    candidate = sha256_hex(client_secret)
    expected = account.secret_hash if account else sha256_hex("no-such-account")
    if not hmac.compare_digest(candidate, expected) or account is None:
        return None
    return account
