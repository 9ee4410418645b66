"""Inserting many rows of one model fast: PostgreSQL's COPY, ``bulk_create`` elsewhere (SQLite).

``insert_columns(model, columns, n)`` takes the values column by column ({attname: sequence of n values,
already plain Python: int, float, str or None}); every other concrete field gets its default, so a
field added to the model later is filled the way ``bulk_create`` would fill it.
"""
from __future__ import annotations

from django.db import connection

BATCH = 2000


def _defaults(model, given: set[str]) -> dict[str, object]:
    out = {}
    for f in model._meta.concrete_fields:
        if f.primary_key or f.attname in given:
            continue
        out[f.attname] = f.get_db_prep_save(f.get_default(), connection) if f.has_default() or f.null else None
        if out[f.attname] is None and not f.null:
            raise ValueError(f"{model.__name__}.{f.name} has no default: give its column")
    return out


def insert_columns(model, columns: dict[str, list], n: int) -> None:
    for name, values in columns.items():
        if len(values) != n:
            raise ValueError(f"column {name}: {len(values)} values for {n} rows")
    if n == 0:
        return
    if connection.vendor != "postgresql":
        names = list(columns)
        model.objects.bulk_create((model(**dict(zip(names, vals))) for vals in zip(*columns.values())),
                                  batch_size=BATCH)
        return
    fixed = _defaults(model, set(columns))
    names = list(columns) + list(fixed)
    cols = ", ".join(connection.ops.quote_name(_column(model, a)) for a in names)
    tail = tuple(fixed.values())
    sql = f"COPY {connection.ops.quote_name(model._meta.db_table)} ({cols}) FROM STDIN"
    with connection.cursor() as cur, cur.cursor.copy(sql) as copy:
        for vals in zip(*columns.values()):
            copy.write_row(vals + tail)


def _column(model, attname: str) -> str:
    for f in model._meta.concrete_fields:
        if f.attname == attname:
            return f.column
    raise ValueError(f"{model.__name__} has no field {attname!r}")
