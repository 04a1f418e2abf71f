"""`ApiKey.link_secret`: a per-key secret for signed links (issue 11, item 6).

Added nullable, filled row by row with its own random value (a callable default in
AddField would give every existing key the same one), then made required.
"""

import secrets

from django.db import migrations, models

import rotate.models


def link_secrets_fill(apps, schema_editor):
    ApiKey = apps.get_model("rotate", "ApiKey")
    for api_key in ApiKey.objects.filter(link_secret__isnull=True).only("pk").iterator():
        # As rotate.models.link_secret_generate does today, frozen here.
        ApiKey.objects.filter(pk=api_key.pk).update(link_secret=secrets.token_urlsafe(32))


class Migration(migrations.Migration):

    dependencies = [
        ("rotate", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="apikey",
            name="link_secret",
            field=models.CharField(editable=False, max_length=64, null=True),
        ),
        migrations.RunPython(link_secrets_fill, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="apikey",
            name="link_secret",
            field=models.CharField(
                default=rotate.models.link_secret_generate, editable=False, max_length=64
            ),
        ),
    ]
