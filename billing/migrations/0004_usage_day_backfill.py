"""Fill the daily usage rollup from the usage already on the ledger (ledger_post keeps it from now)."""

from __future__ import annotations

from typing import Any

from django.db import migrations


def backfill(apps: Any, schema_editor: Any) -> None:
    from datetime import UTC

    from django.db.models import BigIntegerField, Sum
    from django.db.models.fields.json import KeyTextTransform
    from django.db.models.functions import Cast, TruncDate

    entry, usage_day = apps.get_model("billing", "LedgerEntry"), apps.get_model("billing", "UsageDay")
    seconds = Cast(KeyTextTransform("gpu_seconds", "transaction__metadata"), BigIntegerField())
    rows = (
        entry.objects.filter(account__kind="available", transaction__kind="usage", transaction__org__isnull=False)
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("transaction__org_id", "day", "transaction__service")
        .annotate(spent=Sum("amount_micros"), seconds=Sum(seconds))
    )
    usage_day.objects.bulk_create(
        usage_day(org_id=r["transaction__org_id"], day=r["day"], service=r["transaction__service"],
                  spend_micros=-r["spent"], gpu_seconds=r["seconds"] or 0)
        for r in rows
        if r["spent"]
    )  # fmt: skip


class Migration(migrations.Migration):
    dependencies = [("billing", "0003_usage_day")]
    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
