# ServiceAccount and JwksState now belong to the identity app (identity.0001), which kept
# their tables: remove them from this app's state only, never from the database.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("events", "0002_jwksstate"),
        ("identity", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="ServiceAccount"),
                migrations.DeleteModel(name="JwksState"),
            ],
            database_operations=[],
        ),
    ]
