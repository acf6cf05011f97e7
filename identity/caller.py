"""Who is calling: the identity the authentication classes attach to `request.user`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Caller:
    """An authenticated machine caller.

    `caller_id` scopes idempotency keys and event visibility. `auth_pending` marks a token
    that claims the configured identity provider but could not be verified yet:
    its events are stored but not dispatched until verification."""

    caller_id: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    kind: str = "service_account"
    auth_pending: bool = False
    raw_token: str = ""

    is_authenticated = True
    is_anonymous = False

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes
