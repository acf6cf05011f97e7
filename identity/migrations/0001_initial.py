# The service accounts and the JWKS state moved from the events app. Their tables stay as they
# are (db_table keeps the old names): this migration only records the models in the identity
# app's state, and moves their content types so that permissions granted on them (and admin
# log entries) follow the models. events.0003 drops them from the events app's state.

import django.db.models.functions.datetime
from django.db import migrations, models

MOVED = ("serviceaccount", "jwksstate")


def move_content_types(apps, schema_editor, source="events", target="identity"):
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.using(schema_editor.connection.alias).filter(
        app_label=source, model__in=MOVED
    ).update(app_label=target)


def move_content_types_back(apps, schema_editor):
    move_content_types(apps, schema_editor, source="identity", target="events")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("events", "0002_jwksstate"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="ServiceAccount",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("name", models.CharField(max_length=100, unique=True)),
                        ("client_id", models.CharField(max_length=64, unique=True)),
                        ("secret_hash", models.CharField(max_length=64)),
                        ("scopes", models.JSONField(default=list)),
                        ("is_active", models.BooleanField(default=True)),
                        ("created_at", models.DateTimeField(db_default=django.db.models.functions.datetime.Now())),
                        ("revoked_at", models.DateTimeField(blank=True, null=True)),
                        ("rotated_at", models.DateTimeField(blank=True, null=True)),
                    ],
                    options={
                        "db_table": "events_serviceaccount",
                        "ordering": ["name"],
                    },
                ),
                migrations.CreateModel(
                    name="JwksState",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("url", models.CharField(max_length=1000, unique=True)),
                        ("jwks", models.JSONField(default=dict)),
                        ("fetched_at", models.DateTimeField(blank=True, null=True)),
                        ("last_attempt_at", models.DateTimeField(blank=True, null=True)),
                        ("last_error", models.CharField(blank=True, max_length=500)),
                    ],
                    options={
                        "db_table": "events_jwksstate",
                        "verbose_name": "JWKS state",
                        "verbose_name_plural": "JWKS state",
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_types, move_content_types_back),
    ]
