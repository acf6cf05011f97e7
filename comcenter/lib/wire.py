"""Wire formats of the API, each defined once: the idempotency key, the phone number, and
how unvalidated text is quoted back in an error.

This module imports no app of ours (comcenter/lib is below every app)."""

from __future__ import annotations

import re

# The one idempotency-key rule, for the body's `idempotency_key`, the `Idempotency-Key`
# header and the webhooks' `webhook-id`: 1 to 255 printable ASCII characters other than the
# comma, compared exactly (never trimmed, folded or normalised). ASCII only, so no two keys
# that look alike (NFC/NFD, fullwidth forms) can name two events; no comma, because a WSGI
# server joins a repeated header with commas, and a joined `Idempotency-Key: k1,k2` must be
# refused, not taken for a key of its own; no space, so that "k" and "k " never differ.
_KEY_CHARACTERS = r"[\x21-\x2b\x2d-\x7e]{1,255}"
IDEMPOTENCY_KEY = re.compile(rf"\A{_KEY_CHARACTERS}\Z")
# The same rule as an OpenAPI (ECMA-262) pattern, for the published header parameters.
IDEMPOTENCY_KEY_PATTERN = f"^{_KEY_CHARACTERS}$"
IDEMPOTENCY_KEY_RULE = (
    "1 to 255 printable ASCII characters, no space or comma; compared exactly, never "
    "trimmed or normalised"
)

# E.164 with ASCII digits only: `\d` would also match Arabic-Indic or fullwidth digits.
E164 = re.compile(r"\A\+[1-9][0-9]{1,14}\Z")


def idempotency_key_valid(key: str) -> bool:
    return IDEMPOTENCY_KEY.match(key) is not None


def quoted(text: str, *, limit: int = 80) -> str:
    """`text` made safe to echo in an error: lone surrogates and other characters UTF-8
    cannot encode become backslash escapes (an unencodable error body is a 500), and it is
    cut to `limit` characters."""
    safe = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return safe if len(safe) <= limit else safe[: limit - 1] + "…"
