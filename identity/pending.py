"""Receive-and-queue, the identity side: the verdict on a token that was let in unverified.

The events app stores what such a token submitted (`auth_pending`) and asks here, once keys
can be had, what to do with it. The verdict is taken as of the time the event was received
(`exp` and `nbf` against that time), so an outage longer than a token's lifetime does not
reject honest events."""

from __future__ import annotations

from typing import Literal

from django.conf import settings

from identity.idp import IdpTokenInvalid, idp_token_verify

Action = Literal["release", "reject", "wait"]


def pending_token_verdict(*, token: str, caller_id: str, received_at: float) -> tuple[Action, str]:
    """What to do with an event held for `caller_id` by `token`, received at `received_at`
    (epoch seconds); for a rejection also why ("<reason code>: <detail>")."""
    if not token:
        return "reject", "malformed: no token was kept with the event"
    try:
        result = idp_token_verify(raw=token, at=received_at)
    except IdpTokenInvalid as exc:
        return "reject", f"{exc.reason}: {exc.detail}"
    if not result.verified:
        return "wait", ""
    if result.caller_id != caller_id:
        return "reject", "caller_mismatch: the token names another subject than the event"
    if "events:write" not in result.scopes:
        return "reject", f"missing_role: no {settings.JWT_REQUIRED_ROLE!r} and no events:write"
    return "release", ""
