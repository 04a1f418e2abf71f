"""Credit accounts with their append-only ledger (contract §11), and the idempotency records
of E6 (contract §9)."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('rotate', '0002_apikey_link_secret'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='CreditAccount',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('balance', models.BigIntegerField(default=0, editable=False)),
                ('updated_at', models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ('owner', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='credit_account', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['owner_id'],
            },
        ),
        migrations.CreateModel(
            name='CreditEntry',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('grant', 'Grant'), ('charge', 'Charge'), ('refund', 'Refund'), ('adjustment', 'Adjustment')], max_length=16)),
                ('amount', models.BigIntegerField(help_text='Signed: a charge is negative.')),
                ('balance', models.BigIntegerField(help_text="The account's balance after this entry.")),
                ('generation_ids', models.JSONField(blank=True, default=list)),
                ('note', models.TextField(blank=True, default='')),
                ('refunded_generation_id', models.BigIntegerField(blank=True, null=True, unique=True)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('account', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='entries', to='rotate.creditaccount')),
            ],
            options={
                'verbose_name_plural': 'credit entries',
                'ordering': ['-created_at', '-id'],
            },
        ),
        migrations.CreateModel(
            name='IdempotencyRecord',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('key', models.CharField(max_length=255)),
                ('request_digest', models.CharField(max_length=64)),
                ('created_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                ('completed_at', models.DateTimeField(null=True)),
                ('response_status', models.PositiveSmallIntegerField(null=True)),
                ('response_headers', models.JSONField(default=dict)),
                ('response_body', models.BinaryField(null=True)),
                ('owner', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='idempotency_records', to=settings.AUTH_USER_MODEL)),
            ],
        ),
        migrations.AddConstraint(
            model_name='creditaccount',
            constraint=models.CheckConstraint(condition=models.Q(('balance__gte', 0)), name='credit_account_balance_not_negative'),
        ),
        migrations.AddIndex(
            model_name='creditentry',
            index=models.Index(fields=['account', '-created_at', '-id'], name='credit_entry_account_newest'),
        ),
        migrations.AddConstraint(
            model_name='idempotencyrecord',
            constraint=models.UniqueConstraint(fields=('owner', 'key'), name='idempotency_owner_key'),
        ),
    ]
