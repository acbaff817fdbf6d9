"""Writes of many rows in one statement where Django's bulk helpers cost more Python than the
statement costs the database."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection
from django.db.models import Model


def update_by_pk(model: type[Model], fields: Sequence[str], rows: Sequence[tuple[int | str, ...]]) -> None:
    """Set `fields` of each row (pk, value, value, ...) in one UPDATE. bulk_update builds a CASE
    expression object per row and field and resolves each: at hundreds of rows that took longer
    than the statement (bench/ledger_bench.py section 3). Values go as parameters, never as text."""
    if not rows:
        return
    meta = model._meta
    assert meta.pk is not None  # every concrete model has one
    pk = meta.pk.column
    whens = " ".join(["WHEN %s THEN %s"] * len(rows))
    by_name = {field.name: field.column for field in meta.concrete_fields}
    columns = [by_name[name] for name in fields]  # in the rows' order
    sets = ", ".join(f"{column} = CASE {pk} {whens} END" for column in columns)
    params: list[int | str] = [value for i in range(1, len(fields) + 1) for row in rows for value in (row[0], row[i])]
    params += [row[0] for row in rows]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {meta.db_table} SET {sets} WHERE {pk} IN ({', '.join(['%s'] * len(rows))})",  # noqa: S608 - the model's own names
            params,
        )
