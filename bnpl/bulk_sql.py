"""Set-based inserts for the hot paths that write hundreds of rows per transaction (the charge run's chunks).

``QuerySet.bulk_create`` builds one ``INSERT … VALUES`` with a placeholder per column and row; at a
chunk's size (200 rows × 10 columns) the client spends more CPU preparing every value, splitting the
query text and quoting thousands of literals than PostgreSQL spends inserting. The two helpers here
write the same rows with the same field preparation (``pre_save`` then ``get_db_prep_save``, as
``bulk_create`` does), but through ``COPY`` (formatted by psycopg's C code) or one placeholder per
column. Database triggers fire as for any INSERT; Django signals are not sent (as with ``bulk_create``).
"""

from __future__ import annotations

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
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [model._meta.db_table, pk.column, n],
        )
        return [value for (value,) in cursor.fetchall()]


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
