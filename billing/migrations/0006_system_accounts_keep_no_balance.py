"""System accounts stop keeping a cached balance (billing/ledger.py): what they cached so far goes to
0, their balance being the sum of their entries from now on; their new entries carry no
balance_after. Backwards, the cache is the sum again."""

from django.db import migrations, models

FORGET_CACHE = "UPDATE billing_ledgeraccount SET balance_micros = 0 WHERE org_id IS NULL"
RESTORE_CACHE = """
UPDATE billing_ledgeraccount a SET balance_micros =
  COALESCE((SELECT sum(e.amount_micros) FROM billing_ledgerentry e WHERE e.account_id = a.id), 0)
WHERE a.org_id IS NULL
"""


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0005_low_balance_since"),
    ]

    operations = [
        migrations.AlterField(
            model_name="ledgerentry",
            name="balance_after_micros",
            field=models.BigIntegerField(
                blank=True,
                help_text="An org account's balance right after this entry (null on system accounts: they keep none)",
                null=True,
            ),
        ),
        migrations.RunSQL(FORGET_CACHE, RESTORE_CACHE),
    ]
