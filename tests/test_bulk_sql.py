"""gpucloud/core/bulk_sql.py: many rows' fields set in one statement, each row's values to its own row."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.services import user_create
from billing.models import Service, UsageMeter
from gpucloud.core.bulk_sql import update_by_pk

pytestmark = pytest.mark.django_db


def test_each_row_gets_its_own_values_in_the_fields_order_given_in_one_statement() -> None:
    _, org = user_create(email="bulk@example.com", password=None)
    meters = [
        UsageMeter.objects.create(
            meter_key=f"m{n}",
            org=org,
            service=Service.MODEL,
            description="x",
            hourly_price_micros=1,
            started_at="2026-12-01T00:00:00Z",
        )
        for n in range(3)
    ]
    untouched = meters.pop()
    with CaptureQueriesContext(connection) as queries:
        # Fields in the reverse of the model's order: values follow the order given here.
        update_by_pk(
            UsageMeter, ["billed_micros", "billed_seconds"], [(m.pk, 1000 + n, 5 + n) for n, m in enumerate(meters)]
        )
        update_by_pk(UsageMeter, ["billed_seconds"], [])  # nothing to set: no statement
    assert len(queries) == 1
    stored = {key: (seconds, micros) for key, seconds, micros in
              UsageMeter.objects.values_list("meter_key", "billed_seconds", "billed_micros")}  # fmt: skip
    assert stored == {"m0": (5, 1000), "m1": (6, 1001), untouched.meter_key: (0, 0)}
