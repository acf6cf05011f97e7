"""Lanes per (caller, ordering key, channel): one channel's outage no longer holds another's
messages. Existing lanes are split by the channels of their messages; each copy keeps the
lane's done_sequence (what was done for the key is done for each of its channels) and its
busy_until (a lease in flight ends by itself)."""

from django.db import migrations, models


def split_lanes(apps, schema_editor):
    Lane = apps.get_model("delivery", "Lane")
    Message = apps.get_model("delivery", "Message")
    for lane in Lane.objects.filter(channel="").iterator():
        channels = sorted(
            set(Message.objects.filter(lane=lane).values_list("channel", flat=True))
        )
        for index, channel in enumerate(channels):
            if index == 0:
                Lane.objects.filter(pk=lane.pk).update(channel=channel)
                continue
            copy = Lane.objects.create(
                caller=lane.caller,
                ordering_key=lane.ordering_key,
                channel=channel,
                done_sequence=lane.done_sequence,
                busy_until=lane.busy_until,
            )
            Message.objects.filter(lane=lane, channel=channel).update(lane=copy)


class Migration(migrations.Migration):
    dependencies = [("delivery", "0002_helpdesk_channel")]

    operations = [
        migrations.RemoveConstraint(model_name="lane", name="lane_unique"),
        migrations.AddField(
            model_name="lane",
            name="channel",
            field=models.CharField(default="", max_length=20),
            preserve_default=False,
        ),
        migrations.RunPython(split_lanes, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="lane",
            constraint=models.UniqueConstraint(
                fields=("caller", "ordering_key", "channel"), name="lane_unique_per_channel"
            ),
        ),
    ]
