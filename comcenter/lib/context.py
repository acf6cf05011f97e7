"""The request id of the work in progress, carried across function calls (and into the
workers, which set it from the event they process) so that every log line names it."""

from __future__ import annotations

import contextvars
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

# Echo only ids that are safe to store and log: printable, no spaces, bounded.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def new_request_id() -> str:
    return uuid.uuid4().hex


def clean_request_id(candidate: str | None) -> str:
    """The caller's id when it is safe to echo, otherwise a fresh one."""
    if candidate and _SAFE_ID.match(candidate):
        return candidate
    return new_request_id()


def get_request_id() -> str:
    return _request_id.get()


@contextmanager
def request_id_bound(request_id: str) -> Iterator[None]:
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(token)


def set_request_id(request_id: str) -> contextvars.Token[str]:
    return _request_id.set(request_id)


def reset_request_id(token: contextvars.Token[str]) -> None:
    _request_id.reset(token)
