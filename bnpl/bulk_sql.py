"""Set-based inserts for the hot paths that write hundreds of rows per transaction (the charge run's chunks).

``QuerySet.bulk_create`` builds one ``INSERT … VALUES`` with a placeholder per column and row; at a
chunk's size (200 rows × 10 columns) the client spends more CPU preparing every value, splitting the
query text and quoting thousands of literals than PostgreSQL spends inserting. The two helpers here
write the same rows with the same field preparation (``pre_save`` then ``get_db_prep_save``, as
``bulk_create`` does), but through ``COPY`` (formatted by psycopg's C code) or one placeholder per
column. Database triggers fire as for any INSERT; Django signals are not sent (as with ``bulk_create``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection, models


def _columns(model: type[models.Model], *, with_pk: bool) -> list[models.Field]:
    return [
        field
        for field in model._meta.concrete_fields
        if not getattr(field, "generated", False) and (with_pk or not field.primary_key)
    ]


def reserve_pks(model: type[models.Model], n: int) -> list[int]:
    """``n`` fresh primary keys from the table's sequence, one ``nextval`` each, in one statement.

    Safe beside concurrent writers (each ``nextval`` is atomic), so rows can be named before they are
    written: by :func:`copy_insert`, and by the benchmarks' bulk loads (``bench/copyload.py``).
    """
    pk = model._meta.pk
    assert pk is not None
    with connection.cursor() as cursor:
        # The sequence's name is looked up once per process: ``nextval(pg_get_serial_sequence(…))`` in the
        # select list resolves it again for every row (a stable function is not folded), three times the
        # cost of the nextval calls themselves on a charge-run chunk.
        sequence = _sequences.get(model._meta.db_table)
        if sequence is None:
            cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [model._meta.db_table, pk.column])
            sequence = _sequences[model._meta.db_table] = cursor.fetchone()[0]
        cursor.execute("SELECT nextval(%s::regclass) FROM generate_series(1, %s)", [sequence, n])
        return [value for (value,) in cursor.fetchall()]


# The sequence behind each table's automatic primary key (names do not change while the process runs).
_sequences: dict[str, str] = {}


def copy_insert(objs: Sequence[models.Model]) -> None:
    """Insert unsaved instances of one model with ``COPY``; sets each instance's primary key.

    The primary keys of an auto-increment key are reserved first (one ``nextval`` query for the
    batch), so the rows can be named without ``RETURNING``. For append-only rows that cannot exist
    yet (a conflict is an error, as with ``bulk_create`` without ``ignore_conflicts``).
    """
    if not objs:
        return
    model = type(objs[0])
    meta = model._meta
    pk = meta.pk
    assert pk is not None
    auto_pk = isinstance(pk, models.AutoField | models.BigAutoField | models.SmallAutoField)
    if auto_pk:
        missing = [obj for obj in objs if obj.pk is None]
        if missing:
            for obj, value in zip(missing, reserve_pks(model, len(missing)), strict=True):
                obj.pk = value
    with connection.cursor() as cursor:
        fields = _columns(model, with_pk=True)
        quote = connection.ops.quote_name
        sql = f"COPY {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) FROM STDIN"
        with cursor.cursor.copy(sql) as copy:
            for obj in objs:
                copy.write_row([field.get_db_prep_save(field.pre_save(obj, True), connection) for field in fields])
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias


@functools.cache
def _copy_sql(model: type[models.Model], columns: tuple[str, ...]) -> str:
    """The COPY statement of :func:`copy_tuples`; refuses a column list that leaves a column to chance."""
    meta = model._meta
    pk = meta.pk
    assert pk is not None
    known = {field.column for field in _columns(model, with_pk=False)}
    if set(columns) != known or len(columns) != len(known):
        missing, unknown = sorted(known - set(columns)), sorted(set(columns) - known)
        raise ValueError(f"{meta.db_table}: give every column once (missing {missing}, unknown {unknown})")
    quote = connection.ops.quote_name
    return f"COPY {quote(meta.db_table)} ({', '.join(quote(c) for c in (pk.column, *columns))}) FROM STDIN"


def copy_tuples(model: type[models.Model], columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[int]:
    """Insert ``rows`` (tuples of database-ready values, one per column) with ``COPY``; returns their new ids.

    :func:`copy_insert` without the model instances: for the chunk paths that already hold plain values,
    building an instance and preparing each field costs more than the insert (docs/charging.md,
    "Performance"). ``columns`` must name every column but the automatic primary key, so a column added to
    the model later cannot silently be left empty; values are not prepared (give JSON as text, amounts as
    ``Decimal``). The ids are reserved with one ``nextval`` query, so the rows are named without ``RETURNING``.
    """
    if not rows:
        return []
    meta = model._meta
    assert meta.pk is not None and isinstance(meta.pk, models.AutoField | models.BigAutoField)
    sql = _copy_sql(model, tuple(columns))
    ids = reserve_pks(model, len(rows))
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for pk, row in zip(ids, rows, strict=True):
            copy.write_row((pk, *row))
    return ids


def insert_keys_ignoring_conflicts(model: type[models.Model], keys: Iterable[Any], *, key_field: str) -> None:
    """Insert one row per key that differs from a fresh instance only in ``key_field``; existing keys are kept.

    For "create the row if missing" of many consumers at once (scoring features, reward accounts):
    the default values are prepared once, and the keys travel as one array, so the statement costs
    the same to build for 2 keys or 2,000. ``ON CONFLICT DO NOTHING``, like
    ``bulk_create(ignore_conflicts=True)``.
    """
    keys = list(keys)
    if not keys:
        return
    template = model()
    key = model._meta.get_field(key_field)
    fields = [f for f in _columns(model, with_pk=False) if f.column != key.column]
    if not key.primary_key and model._meta.pk is not None and not isinstance(model._meta.pk, models.AutoField):
        raise ValueError("the key must be the primary key, or the primary key must be automatic")
    quote = connection.ops.quote_name
    params: list[Any] = [[key.get_db_prep_save(k, connection) for k in keys]]
    values = []
    for field in fields:
        params.append(field.get_db_prep_save(field.pre_save(template, True), connection))
        values.append(f"%s::{field.db_type(connection)}")
    columns = ", ".join(quote(f.column) for f in [key, *fields])
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({columns}) "  # noqa: S608 - names from the model's own meta
        f"SELECT k, {', '.join(values)} FROM unnest(%s::{key.db_type(connection)}[]) AS k ON CONFLICT DO NOTHING"
    )
    # The key array is the last placeholder in the text: move it after the constants.
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params[1:], params[0]])
