"""Bulk loading for the benchmarks: COPY rows into a model's table, reserve ids, set indexes aside.

Shared by ``bench/charge_run.py`` (due orders) and ``bench/generate.py`` (a whole platform's history). Every
helper takes a model, so the table, column names and the defaults of the columns a caller does not set come
from the model itself: a field added to a model later still gets a valid value here.

Used after Django is configured (``django.setup()``), on the default connection.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any


def _defaults(model: Any, given: set[str]) -> tuple[list[str], list[Any]]:
    """Columns a caller leaves out that still need a value, and that value (computed once).

    Generated columns, the primary key and columns with a database default are left to the database; a field
    with a Python default (or auto_now) gets that value.
    """
    from django.db import connection
    from django.utils import timezone

    now = timezone.now()
    columns: list[str] = []
    constants: list[Any] = []
    for f in model._meta.concrete_fields:
        if f.attname in given or f.primary_key or f.generated or f.has_db_default():
            continue
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            value = now
        elif f.has_default():
            value = f.get_default()
        elif f.null:
            value = None
        else:
            value = f.get_default()  # '' for text fields
        columns.append(f.column)
        constants.append(f.get_db_prep_save(value, connection))
    return columns, constants


def copy_rows(model: Any, attnames: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """COPY ``rows`` (values for ``attnames``) into ``model``'s table; other columns get the model defaults.

    psycopg adapts every value (Decimal, datetime, JSON…): convenient, about a microsecond per value. For tens of
    millions of rows use :func:`copy_text`.
    """
    from django.db import connection

    extra_columns, constants = _defaults(model, set(attnames))
    columns = [model._meta.get_field(name).column for name in attnames] + extra_columns
    sql = f"COPY {model._meta.db_table} ({', '.join(columns)}) FROM STDIN"
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row([*row, *constants])


def copy_value(value: Any) -> str:
    """One value in COPY's text format (``\\N`` for NULL; backslash, tab and newlines escaped)."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int | Decimal | float):
        return str(value)
    if isinstance(value, datetime):
        text = value.isoformat()
    elif isinstance(value, list | tuple):
        text = "{" + ",".join(json.dumps(str(item), ensure_ascii=False) for item in value) + "}"
    elif hasattr(value, "obj"):  # psycopg's Json / Jsonb wrapper (a JSONField's prepared value)
        text = json.dumps(value.obj, ensure_ascii=False)
    elif isinstance(value, dict):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def copy_text(model: Any, attnames: Sequence[str], lines: Iterable[str], *, block: int = 1 << 20) -> int:
    """COPY pre-formatted text rows into ``model``'s table; returns the number of rows.

    Each line holds the values of ``attnames`` in COPY's text format, tab-separated, without the final newline
    (the caller formats them: ``copy_value`` for anything that may need escaping). Columns the caller leaves out
    get the model defaults, as in :func:`copy_rows`. Lines are sent in blocks of about ``block`` bytes, so the
    server parses one block while Python formats the next: the fastest way from Python into a table.
    """
    from django.db import connection

    extra_columns, constants = _defaults(model, set(attnames))
    columns = [model._meta.get_field(name).column for name in attnames] + extra_columns
    tail = "".join("\t" + copy_value(value) for value in constants) + "\n"
    sql = f"COPY {model._meta.db_table} ({', '.join(columns)}) FROM STDIN"
    n = 0
    chunk: list[str] = []
    size = 0
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for line in lines:
            chunk.append(line)
            size += len(line)
            n += 1
            if size >= block:
                copy.write(tail.join(chunk) + tail)
                chunk, size = [], 0
        if chunk:
            copy.write(tail.join(chunk) + tail)
    return n


def reserve_ids(model: Any, n: int) -> list[int]:
    """``n`` fresh ids from the table's sequence, one ``nextval`` each (safe beside concurrent writers)."""
    from bnpl.bulk_sql import reserve_pks

    return reserve_pks(model, n)


def reserve_id_block(model: Any, n: int) -> int:
    """The first of ``n`` consecutive ids taken from the table's sequence in one statement.

    Moves the sequence past the block with ``setval``: cheap for tens of millions of ids, but only for a
    database nobody else writes to while it runs (the generator's own, freshly created). Returns the first id.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setval(s, nextval(s) + %s - 1) - %s + 1 FROM pg_get_serial_sequence(%s, 'id') AS s",
            [n, n, model._meta.db_table],
        )
        return cursor.fetchone()[0]


# --------------------------------------------------------------------------------------------------------------
# secondary indexes, foreign keys and triggers set aside for the duration of a load


@dataclass
class SetAside:
    """What :func:`set_aside` dropped or disabled, with the catalogue's own definitions to restore it."""

    indexes: list[tuple[str, str, str]] = field(default_factory=list)  # (table, name, CREATE INDEX …)
    constraints: list[tuple[str, str, str]] = field(default_factory=list)  # (table, name, definition)
    triggers: list[tuple[str, str]] = field(default_factory=list)  # (table, trigger name)

    def describe(self) -> str:
        fks = sum(1 for _t, _n, d in self.constraints if d.startswith("FOREIGN KEY"))
        return (
            f"{len(self.indexes)} indexes, {len(self.constraints) - fks} unique constraints, {fks} foreign keys, "
            f"{len(self.triggers)} triggers"
        )


_CONSTRAINTS = """
SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid), c.contype
FROM pg_constraint c
WHERE c.conrelid = ANY(%s::regclass[]) AND c.contype IN ('f', 'u')
ORDER BY c.contype, c.conname
"""
_INDEXES = """
SELECT i.indrelid::regclass::text, i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
FROM pg_index i
WHERE i.indrelid = ANY(%s::regclass[]) AND NOT i.indisprimary
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
ORDER BY 1
"""
_TRIGGERS = """
SELECT t.tgrelid::regclass::text, t.tgname
FROM pg_trigger t
WHERE t.tgrelid = ANY(%s::regclass[]) AND NOT t.tgisinternal AND t.tgenabled <> 'D'
ORDER BY 1, 2
"""


def set_aside(tables: Sequence[str]) -> SetAside:
    """Drop the secondary indexes, unique constraints and foreign keys of ``tables``; disable their triggers.

    What pg_restore does for a data load: rows go in without per-row index maintenance, foreign-key checks or
    trigger calls, and :func:`restore` then builds each index in one sort and validates each foreign key and
    unique constraint in one pass over the table. Primary keys stay. Only for a database nobody else uses
    meanwhile (the generator's own): what is set aside is committed with the load, so a load that fails half
    way leaves the database without them, to be dropped and created again. Definitions come from the
    catalogue, so whatever the migrations declare (now or later) is what gets rebuilt.
    """
    from django.db import connection

    aside = SetAside()
    with connection.cursor() as cursor:
        cursor.execute(_CONSTRAINTS, [list(tables)])
        rows = cursor.fetchall()
        # Foreign keys first: a unique constraint may be what another table's foreign key points at.
        for table, name, definition, _type in sorted(rows, key=lambda r: r[3] != "f"):
            cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
            aside.constraints.append((table, name, definition))
        cursor.execute(_INDEXES, [list(tables)])
        for table, name, definition in cursor.fetchall():
            cursor.execute(f"DROP INDEX {name}")
            aside.indexes.append((table, name, definition))
        cursor.execute(_TRIGGERS, [list(tables)])
        for table, name in cursor.fetchall():
            cursor.execute(f'ALTER TABLE {table} DISABLE TRIGGER "{name}"')
            aside.triggers.append((table, name))
    return aside


def restore(
    aside: SetAside,
    *,
    workers: int = 1,
    fills: Sequence[tuple[Sequence[str], Callable[[], None]]] = (),
    log: Any = print,
) -> dict[str, float]:
    """Rebuild what :func:`set_aside` took away: indexes, then unique constraints, then foreign keys (validated).

    With ``workers`` > 1 the statements of each step run on that many connections at once (the load must be
    committed, so they see it): index builds are mostly one busy core each, writing the index and its WAL.
    ``fills`` are (tables, function) steps taken before the index builds, each on a connection of its own while
    the other connections build indexes, such as filling a table from the others: the indexes of the tables
    they name wait for them. Statements that lock one table exclusively take turns: unique constraints per
    table; foreign keys are added ``NOT VALID`` (a moment each) and then validated, which locks only the
    referencing table against the same, so validations of different tables run at once. Returns the seconds
    each index and constraint took, by name, so a caller can say where the time went.
    """
    from django.db import connection

    spent: dict[str, float] = {}

    def timed(name: str, sql: str, what: str) -> Callable[[], None]:
        def run() -> None:
            started = time.perf_counter()
            with connection.cursor() as cursor:
                cursor.execute(sql)
            spent[name] = time.perf_counter() - started
            log(f"      {what} {name}: {spent[name]:.1f} s")

        return run

    filled = {table for tables, _step in fills for table in tables}
    # The biggest tables' indexes first, so the last builds to finish are small ones.
    by_size = _table_sizes({t for t, _n, _d in aside.indexes} | {t for t, _n, _d in aside.constraints})
    indexes = sorted(aside.indexes, key=lambda index: -by_size.get(index[0], 0))
    run_parallel(
        [
            *fills,
            *(({table} & filled, timed(name, definition, "index")) for table, name, definition in indexes),
        ],
        workers,
    )
    constraints = sorted(aside.constraints, key=lambda c: -by_size.get(c[0], 0))
    # Unique constraints before the foreign keys that may reference them.
    run_parallel(
        [
            ((table,), timed(name, f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}', "constraint"))
            for table, name, definition in constraints
            if not definition.startswith("FOREIGN KEY")
        ],
        workers,
    )
    foreign = [
        (table, name, definition) for table, name, definition in constraints if definition.startswith("FOREIGN KEY")
    ]
    with connection.cursor() as cursor:
        for table, name, definition in foreign:
            cursor.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition} NOT VALID')
    run_parallel(
        [
            ((table,), timed(name, f'ALTER TABLE {table} VALIDATE CONSTRAINT "{name}"', "foreign key"))
            for table, name, _definition in foreign
        ],
        workers,
    )
    with connection.cursor() as cursor:
        for table, name in aside.triggers:
            cursor.execute(f'ALTER TABLE {table} ENABLE TRIGGER "{name}"')
    return spent


#: Memory for each index build and constraint validation (per connection; PostgreSQL's default is 64 MB).
MAINTENANCE_WORK_MEM = "SET maintenance_work_mem = '512MB'"


def _table_sizes(tables: set[str]) -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT t, pg_relation_size(t::regclass) FROM unnest(%s::text[]) AS t", [sorted(tables)])
        return dict(cursor.fetchall())


def run_parallel(steps: Sequence[tuple[Sequence[str], Callable[[], None]]], workers: int) -> None:
    """Run ``steps`` (tables to hold, function) on ``workers`` threads, each with its own database connection.

    A step holds its tables (in name order, so two steps never wait on each other crosswise) while it runs;
    steps on other tables run meanwhile. Each connection is in autocommit, so every statement commits on its
    own. The first failure stops the steps not yet started and is raised here once the running ones end.
    """
    import queue
    import threading

    from django.db import connection

    if workers <= 1:
        with connection.cursor() as cursor:
            cursor.execute(MAINTENANCE_WORK_MEM)
        for _tables, step in steps:
            step()
        return
    pending: queue.SimpleQueue = queue.SimpleQueue()
    for item in steps:
        pending.put(item)
    table_locks: dict[str, threading.Lock] = {}
    for tables, _step in steps:
        for table in tables:
            table_locks.setdefault(table, threading.Lock())
    failures: list[BaseException] = []

    def work() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute(MAINTENANCE_WORK_MEM)
            while not failures:
                try:
                    tables, step = pending.get_nowait()
                except queue.Empty:
                    return
                locks = [table_locks[table] for table in sorted(set(tables))]
                for lock in locks:
                    lock.acquire()
                try:
                    step()
                finally:
                    for lock in reversed(locks):
                        lock.release()
        except BaseException as exc:
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, name=f"restore-{i}") for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
