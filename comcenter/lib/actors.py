"""Who did it, for the audit rows of management commands."""

from __future__ import annotations

import getpass


def os_user() -> str:
    """The OS user running the command."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER, as in some containers
        return "unknown"
