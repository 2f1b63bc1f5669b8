"""PostgreSQL array literals for the charge run's set-based statements (``UPDATE … FROM unnest(%s::bigint[], …)``).

Django's cursors bind on the client, so psycopg turns each list parameter into an array literal itself, element
by element: finding each element's dumper, dumping it, searching it for characters to quote. On a chunk's
columns of 200 values that cost 1–6 µs per value (timestamps the most), more than PostgreSQL spends on the
row: about 15 % of the run's Python time went there (docs/charging.md). These functions build the same literal
with one ``join`` per column, to be passed as one string and cast in the statement (``%s::bigint[]``), so the
SQL and its results do not change. ``None`` becomes ``NULL``; every text element is quoted, so no string
(``"NULL"``, ``""``, one with braces, commas, quotes or backslashes) is ever read as anything but itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal


def int_array(values: Iterable[int | None]) -> str:
    """A ``bigint[]``/``int[]`` literal."""
    return "{" + ",".join("NULL" if value is None else str(int(value)) for value in values) + "}"


def numeric_array(values: Iterable[Decimal | int | None]) -> str:
    """A ``numeric[]`` literal of ``Decimal``s or ints; a float is refused (it would bring its binary error)."""
    return "{" + ",".join("NULL" if value is None else _decimal(value) for value in values) + "}"


def text_array(values: Iterable[str | None]) -> str:
    """A ``text[]`` literal, every element quoted and escaped as the array input syntax asks."""
    return "{" + ",".join("NULL" if value is None else _quoted(value) for value in values) + "}"


def timestamp_array(values: Iterable[datetime | None]) -> str:
    """A ``timestamptz[]`` literal of aware datetimes (ISO 8601 with offset; a chunk repeats a few values)."""
    written: dict[datetime, str] = {}
    parts = []
    for value in values:
        if value is None:
            parts.append("NULL")
            continue
        text = written.get(value)
        if text is None:
            if value.tzinfo is None:
                raise ValueError("timestamp_array takes aware datetimes only")
            text = written[value] = value.isoformat()
        parts.append(text)
    return "{" + ",".join(parts) + "}"


def _decimal(value: Decimal | int) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError(f"numeric_array takes finite Decimals and ints only, not {value!r}")
    return str(value)


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
