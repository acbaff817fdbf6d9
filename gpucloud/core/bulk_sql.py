"""Writes of many rows in one statement where Django's bulk helpers cost more Python than the
statement costs the database."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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


def insert_rows(model: type[Model], fields: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """INSERT rows of `fields` values (ready for the database: see db_value). bulk_create builds a
    model instance per row and prepares every value through its field: for rows the platform makes
    itself that was most of the cost. PostgreSQL takes them by COPY (no statement text to build or
    parse: a statement of thousands of parameters cost psycopg more to split than the server to
    run); other databases by multi-row INSERTs within their parameter limit."""
    if not rows:
        return
    meta = model._meta
    by_name = {field.name: field.column for field in meta.concrete_fields}
    columns = ", ".join(by_name[name] for name in fields)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {meta.db_table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        row_marks = "(" + ", ".join(["%s"] * len(fields)) + ")"
        per_statement = max(1, (connection.features.max_query_params or 65_535) // len(fields))
        for first in range(0, len(rows), per_statement):
            chunk = rows[first : first + per_statement]
            cursor.execute(
                f"INSERT INTO {meta.db_table} ({columns}) VALUES {', '.join([row_marks] * len(chunk))}",  # noqa: S608 - the model's own names
                [value for row in chunk for value in row],
            )


def db_value(model: type[Model], field: str, value: object) -> Any:
    """`value` as the database stores `model.field` (an aware datetime as SQLite's text, say)."""
    return model._meta.get_field(field).get_db_prep_save(value, connection)  # type: ignore[union-attr]
