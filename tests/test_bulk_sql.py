"""gpucloud/core/bulk_sql.py: many rows' fields set in one statement, each row's values to its own row."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.services import user_create
from billing.models import Service, UsageMeter
from gpucloud.core.bulk_sql import db_value, insert_rows, update_by_pk

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


@pytest.mark.parametrize("vendor", ["postgresql", "other"])
def test_rows_are_inserted_as_given_by_copy_or_by_inserts_within_the_parameter_limit(
    vendor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, org = user_create(email="rows@example.com", password=None)
    started = timezone.now()
    rows = [
        (f"r{n}", org.pk, Service.MODEL, f"row {n}", n, 1, db_value(UsageMeter, "started_at", started), None, n, 0)
        for n in range(7)
    ]
    monkeypatch.setattr(connection, "vendor", vendor)  # "other": the multi-row INSERTs SQLite gets
    monkeypatch.setattr(connection.features, "max_query_params", 20)  # two rows a statement
    with CaptureQueriesContext(connection) as queries:
        # Every column without a database default (Django's defaults are its own, not the table's).
        fields = ["meter_key", "org", "service", "description", "hourly_price_micros", "gpu_count", "started_at",
                  "ended_at", "billed_seconds", "billed_micros"]  # fmt: skip
        insert_rows(UsageMeter, fields, rows)
    assert len(queries) == (0 if vendor == "postgresql" else 4)  # a COPY goes past Django's query log
    stored = UsageMeter.objects.order_by("meter_key").values_list(
        "meter_key", "org_id", "description", "hourly_price_micros", "started_at", "ended_at", "billed_seconds"
    )
    assert list(stored) == [(f"r{n}", org.pk, f"row {n}", n, started, None, n) for n in range(7)]
