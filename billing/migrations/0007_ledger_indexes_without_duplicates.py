"""Fewer indexes for every posting to write (issue 19): the idempotency key unique by a constraint
(no second, pattern-matching index on PostgreSQL), and no index of their own for a transaction's org
or an entry's account, each the first column of a composite index that serves its lookups."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0005_ssh_keys'),
        ('billing', '0006_system_accounts_keep_no_balance'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name='ledgerentry',
            name='account',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='entries', to='billing.ledgeraccount'),
        ),
        migrations.AlterField(
            model_name='ledgertransaction',
            name='idempotency_key',
            field=models.CharField(max_length=200),
        ),
        migrations.AlterField(
            model_name='ledgertransaction',
            name='org',
            field=models.ForeignKey(db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='accounts.organization'),
        ),
        migrations.AddConstraint(
            model_name='ledgertransaction',
            constraint=models.UniqueConstraint(fields=('idempotency_key',), name='ledger_transaction_key_unique'),
        ),
    ]
