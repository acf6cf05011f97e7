from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("delivery", "0003_lane_per_channel")]

    operations = [
        migrations.CreateModel(
            name="ProviderCircuit",
            fields=[
                (
                    "provider",
                    models.CharField(max_length=50, primary_key=True, serialize=False),
                ),
                ("opened_at", models.DateTimeField()),
                ("open_until", models.DateTimeField()),
            ],
        ),
    ]
