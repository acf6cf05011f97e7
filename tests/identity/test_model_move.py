"""The service accounts and the JWKS state moved from the events app to the identity app
without a copy: a database migrated before the move keeps its rows, and the permissions
granted on the moved models follow them."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from identity.models import JwksState, ServiceAccount

BEFORE = [("events", "0002_jwksstate"), ("identity", None)]


def test_it_keeps_rows_and_permissions_across_the_move(transactional_db: Any) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    graph = executor.loader.graph
    auth_leaves = [node for node in graph.leaf_nodes() if node[0] in ("auth", "contenttypes")]
    old = executor.loader.project_state([BEFORE[0], *auth_leaves]).apps
    account = old.get_model("events", "ServiceAccount").objects.create(
        name="billing", client_id="cc_billing", secret_hash="0" * 64, scopes=["events:write"]
    )
    old.get_model("events", "JwksState").objects.create(url="https://idp.example/jwks")
    content_types = old.get_model("contenttypes", "ContentType")
    # As `migrate` left them before the move (going back moved them to the events app).
    content_type, _ = content_types.objects.get_or_create(
        app_label="events", model="serviceaccount"
    )
    permission, _ = old.get_model("auth", "Permission").objects.get_or_create(
        codename="view_serviceaccount",
        content_type=content_type,
        defaults={"name": "Can view service account"},
    )
    old.get_model("auth", "Group").objects.create(name="Readers").permissions.add(permission)

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    moved = ServiceAccount.objects.get(client_id="cc_billing")
    assert (moved.pk, moved.name, moved.scopes) == (account.pk, "billing", ["events:write"])
    assert JwksState.objects.filter(url="https://idp.example/jwks").exists()
    readers = Group.objects.get(name="Readers")
    assert readers.permissions.filter(
        content_type__app_label="identity", codename="view_serviceaccount"
    ).exists()
    assert ServiceAccount._meta.db_table == "events_serviceaccount"
