"""Django in the benchmark's own process, for the in-process cost scripts (handler_cost,
throttle_cost, wake_cost, ack_levers, worker_cost, tick_cost): a database of its own on a
PostgreSQL cluster started for the script (bench/stack.py), migrated, and removed at the end.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from bench.stack import PostgresCluster

# The event type the scripts post (the intake refuses unknown types).
EVENT_TYPE = "deadline_soon"


@contextmanager
def django_on_private_cluster(name: str, **environ: str) -> Iterator[None]:
    """Django set up against database `name` of a new cluster, with `environ` on top of the
    settings every script needs (its own SECRET_KEY and AUDIT_KEY, warnings-only logs)."""
    cluster = PostgresCluster()
    cluster.start()
    try:
        os.environ.update(
            DATABASE_URL=cluster.create_database(name),
            SECRET_KEY="bench-" + secrets.token_urlsafe(40),
            AUDIT_KEY="bench-" + secrets.token_urlsafe(40),
            DJANGO_SETTINGS_MODULE="comcenter.settings",
            ENV_FILE="",
            ALLOWED_HOSTS="127.0.0.1",
            LOG_LEVEL="WARNING",
            **environ,
        )
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        yield
    finally:
        cluster.stop()


def intake_token() -> str:
    """A bearer token of a new service account that may post events of EVENT_TYPE."""
    from events.services import event_type_ensure
    from identity.auth import issue_access_token
    from identity.services import service_account_create

    event_type_ensure(name=EVENT_TYPE)
    account, _ = service_account_create(name="cost", scopes=["events:write"])
    return str(issue_access_token(account, ["events:write"]))
