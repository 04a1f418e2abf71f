"""`external_id` is kept as sent, "" included, and None when none was sent. Rows from
before could not tell the two apart and were shown as null: they become None."""

from django.db import migrations, models


def empty_to_none(apps, schema_editor):
    Generation = apps.get_model("generations", "Generation")
    Generation.objects.filter(external_id="").update(external_id=None)


def none_to_empty(apps, schema_editor):
    Generation = apps.get_model("generations", "Generation")
    Generation.objects.filter(external_id__isnull=True).update(external_id="")


class Migration(migrations.Migration):
    dependencies = [
        ("generations", "0005_webhooks"),
    ]

    operations = [
        migrations.AlterField(
            model_name="generation",
            name="external_id",
            field=models.CharField(blank=True, default=None, max_length=255, null=True),
        ),
        migrations.RunPython(empty_to_none, none_to_empty, elidable=True),
    ]
