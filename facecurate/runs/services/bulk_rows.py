"""Inserting many rows of one model fast: PostgreSQL's COPY, one prepared INSERT over all rows elsewhere
(SQLite's executemany), no model instances either way.

``insert_columns(model, columns, n)`` takes the values column by column ({attname: sequence of n values,
already plain Python: int, float, str or None}); every other concrete field gets its default, so a
field added to the model later is filled the way ``bulk_create`` would fill it.
"""
from __future__ import annotations

import itertools

from django.db import connection

BATCH = 50_000


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
    fixed = _defaults(model, set(columns))
    names = list(columns) + list(fixed)
    cols = ", ".join(connection.ops.quote_name(_column(model, a)) for a in names)
    table = connection.ops.quote_name(model._meta.db_table)
    tail = tuple(fixed.values())
    rows = (vals + tail for vals in zip(*columns.values()))
    if connection.vendor == "postgresql":
        with connection.cursor() as cur, cur.cursor.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    # elsewhere (SQLite): one prepared INSERT run over the rows in C, no model instances
    sql = f"INSERT INTO {table} ({cols}) VALUES ({', '.join(['%s'] * len(names))})"
    with connection.cursor() as cur:
        while batch := list(itertools.islice(rows, BATCH)):
            cur.executemany(sql, batch)


def _column(model, attname: str) -> str:
    for f in model._meta.concrete_fields:
        if f.attname == attname:
            return f.column
    raise ValueError(f"{model.__name__} has no field {attname!r}")


def refresh_statistics(*models) -> None:
    """Let the database's planner see rows just inserted in bulk (``ANALYZE`` of these tables).

    Until then a table that just gained a million rows has stale (PostgreSQL) or no (SQLite) statistics, and
    the planner picks the wrong index (bench/results/scale_run.md, 1M faces): PostgreSQL guessed hundreds of
    thousands of rows for ``cluster_id IN (100 ids)`` and the queue's thumbnail query scanned both tables
    (750 ms, 11 ms after); SQLite read the run's 100k clusters by priority to find 6 by number (163 ms,
    5 ms after). On SQLite ``analysis_limit`` keeps it to a sample (milliseconds at 1M rows)."""
    vendor = connection.vendor
    if vendor not in ("postgresql", "sqlite"):
        return
    with connection.cursor() as cur:
        if vendor == "sqlite":
            cur.execute("PRAGMA analysis_limit=1000")
        for model in models:
            cur.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
        if vendor == "sqlite":
            cur.execute("PRAGMA analysis_limit=0")
