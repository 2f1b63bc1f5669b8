"""Model rows read and written with SQL built once, for the API's order path (leaf: imports only Django and psycopg).

Compiling a queryset (``select_related``, ``first()``, ``select_for_update``) costs the client more than
PostgreSQL spends running the query: on ``POST /api/v1/orders`` the ORM's compilation of the key lookup,
the listing and the agreement lock was a third of the request's Python time (docs/performance.md,
"HTTP load"). Those reads are written once as SQL from the models' metadata (table and column names
are never typed by hand, so a renamed column is followed) and their rows turned into model instances
here, with each field's ``from_db_value`` applied as the ORM applies it (JSON, arrays of JSON, custom
fields), so the instances are what the ORM would have returned.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import psycopg
from django.db import connection, models


def columns(model: type[models.Model], alias: str) -> str:
    """Every concrete column of ``model`` as ``alias."column"``, in the order :func:`instance` reads them."""
    return ", ".join(f'{alias}."{field.column}"' for field in model._meta.concrete_fields)


def width(model: type[models.Model]) -> int:
    """How many values :func:`columns` selects for ``model``."""
    return len(model._meta.concrete_fields)


def instance[M: models.Model](model: type[M], row: Sequence[Any]) -> M:
    """The ``model`` instance of a row selected with :func:`columns` (its values converted as the ORM does)."""
    fields = model._meta.concrete_fields
    values = []
    for field, value in zip(fields, row, strict=True):
        for converter in field.get_db_converters(connection):
            value = converter(value, None, connection)
        values.append(value)
    return model.from_db(connection.alias, [field.attname for field in fields], values)


# --------------------------------------------------------------------------- writes of one instance
#
# ``Model.save()`` compiles its INSERT or UPDATE anew each time (about half a millisecond of Python for
# a row). The order path writes six rows per request, so it uses these two: the same field preparation
# as ``save()`` (``pre_save``, so ``auto_now`` and ``auto_now_add`` are set on the instance too, then
# ``get_db_prep_save``) and a statement built once per model and field list. They send no signals (none
# are connected to the models they are used for) and handle neither parents (multi-table inheritance)
# nor fields the database computes: those models are refused, not silently half-saved.


def _plain(model: type[models.Model]) -> None:
    meta = model._meta
    if meta.parents or any(field.generated or field.has_db_default() for field in meta.concrete_fields):
        raise TypeError(f"{meta.label}: use save() (parents or database-computed fields)")


@functools.cache
def _insert_sql(model: type[models.Model]) -> tuple[str, tuple[models.Field, ...]]:
    _plain(model)
    meta = model._meta
    fields = tuple(field for field in meta.concrete_fields if not field.primary_key)
    names = ", ".join(f'"{field.column}"' for field in fields)
    values = ", ".join(["%s"] * len(fields))
    sql = f'INSERT INTO "{meta.db_table}" ({names}) VALUES ({values}) RETURNING "{meta.pk.column}"'  # noqa: S608
    return sql, fields


def insert(obj: models.Model) -> None:
    """``obj.save(force_insert=True)`` for a new row whose key the database assigns; sets ``obj.pk``."""
    sql, fields = _insert_sql(type(obj))
    params = [field.get_db_prep_save(field.pre_save(obj, True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        (obj.pk,) = cursor.fetchone()
    obj._state.adding = False
    obj._state.db = connection.alias


@functools.cache
def _update_sql(model: type[models.Model], names: tuple[str, ...]) -> tuple[str, tuple[models.Field, ...]]:
    _plain(model)
    meta = model._meta
    fields = tuple(meta.get_field(name) for name in names)
    assignments = ", ".join(f'"{field.column}" = %s' for field in fields)
    return f'UPDATE "{meta.db_table}" SET {assignments} WHERE "{meta.pk.column}" = %s', fields  # noqa: S608


def update(obj: models.Model, update_fields: Sequence[str], *, missing_ok: bool = False) -> None:
    """``obj.save(update_fields=update_fields)`` (names as given to ``save``; ``auto_now`` fields are set too).

    As ``save()``, a row that is gone raises ``NotUpdated``, unless ``missing_ok`` (then nothing happens,
    as with ``QuerySet.update()``).
    """
    sql, fields = _update_sql(type(obj), tuple(dict.fromkeys(update_fields)))
    params = [field.get_db_prep_save(field.pre_save(obj, False), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, obj.pk])
        if cursor.rowcount != 1 and not missing_ok:
            raise type(obj).NotUpdated("Save with update_fields did not affect any rows.")


#: The threshold while a :func:`fetch_prepared` statement runs when the connection has none: never reached by
#: counting (only ``prepare=True`` prepares).
_PREPARE_ON_REQUEST = 2**31


def fetch_prepared(sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    """The first row of ``sql`` (``%s`` placeholders), run as a prepared statement of this thread's connection.

    Django's cursors bind parameters on the client, so PostgreSQL parses and plans each statement anew. For
    a fixed statement run on every request of a busy service, planning costs more than running it: the
    sandbox provider's faults read spent 31 µs planning for 10 µs executing (docs/charging.md). Here
    psycopg binds on the server and prepares the statement on first use, once per connection (psycopg
    keeps the most recent ``prepared_max`` of them). Errors come out as Django's database errors, as from a
    Django cursor, and the connection's transaction state is the caller's. Django's query log and execute
    wrappers (``connection.execute_wrapper``) do not see the statement: only for statements that need
    neither, on tables without audit triggers (the audit context comes from a wrapper). A prepared
    statement lives as long as its connection: a migration that changes what it returns (a function's
    result columns) needs the processes holding such connections restarted, as a deployment does.
    """
    return _run_prepared(sql, params, all_rows=False)


def _run_prepared(sql: str, params: Sequence[Any], *, all_rows: bool) -> Any:
    # What a Django cursor checks first: a connection that failed its health check is replaced, and a
    # connection is never used from a thread it does not belong to.
    connection.close_if_health_check_failed()
    connection.validate_thread_sharing()
    connection.ensure_connection()
    raw = connection.connection
    # Django opens connections with ``prepare_threshold=None``, which turns preparing off for the whole
    # connection, ``prepare=True`` included; it is lifted for this statement only (the connection is this
    # thread's), so the ORM's statements are never prepared.
    threshold = raw.prepare_threshold
    raw.prepare_threshold = threshold if threshold is not None else _PREPARE_ON_REQUEST
    try:
        with connection.wrap_database_errors, psycopg.Cursor(raw) as cursor:
            cursor.execute(sql, params, prepare=True)
            return cursor.fetchall() if all_rows else cursor.fetchone()
    finally:
        raw.prepare_threshold = threshold


def fetch_all_prepared(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Every row of ``sql``, run as :func:`fetch_prepared` runs it."""
    return _run_prepared(sql, params, all_rows=True)
