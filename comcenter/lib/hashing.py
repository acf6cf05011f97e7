"""Canonical JSON and hashes, shared by idempotency, template renders and the audit chain."""

from __future__ import annotations

import hashlib
import json
from typing import Any

# One encoder for every call: json.dumps builds a new one each time it is given options (the
# audit sealer encodes every lineage row).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: Any) -> str:
    """One byte-exact text per JSON value: sorted keys, no spaces, UTF-8 kept as is."""
    return _CANONICAL.encode(value)


def sha256_hex(text: str | bytes) -> str:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def json_hash(value: Any) -> str:
    return sha256_hex(canonical_json(value))
