"""Array literals built by hand read back in PostgreSQL as exactly the values given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

from bnpl.sql_arrays import int_array, numeric_array, text_array, timestamp_array

pytestmark = pytest.mark.django_db


def read_back(literal: str, pg_type: str) -> list:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT %s::{pg_type}", [literal])
        return cursor.fetchone()[0]


TRICKY_TEXT = ["", "NULL", "null", " ", "a,b", "{x}", 'say "hi"', "back\\slash", '\\"', "收款 ¥5.00", "line\nbreak"]


def test_text_elements_come_back_as_themselves_and_none_as_null():
    values = [*TRICKY_TEXT, None]

    assert read_back(text_array(values), "text[]") == values


# Any text PostgreSQL can hold: no NUL, no lone surrogates (not UTF-8; psycopg refuses them as parameters anyway).
@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.one_of(st.none(), st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00")))
    )
)
def test_any_text_comes_back_as_itself(values):
    assert read_back(text_array(values), "text[]") == values


def test_ints_and_numerics_come_back_exactly():
    ints = [0, -1, 2**62, None, 7]
    amounts = [Decimal("5.00"), Decimal("-0.01"), Decimal("1E+3"), Decimal("12345678901234.56"), None, 3]

    assert read_back(int_array(ints), "bigint[]") == ints
    assert read_back(numeric_array(amounts), "numeric[]") == amounts


def test_timestamps_come_back_as_the_same_instants():
    now = datetime(2026, 11, 26, 14, 5, 6, 789012, tzinfo=UTC)
    shanghai = timezone(timedelta(hours=8))
    values = [now, None, now, now.astimezone(shanghai) + timedelta(microseconds=1)]

    assert read_back(timestamp_array(values), "timestamptz[]") == values


def test_empty_lists_are_empty_arrays():
    assert read_back(int_array([]), "bigint[]") == []
    assert read_back(text_array([]), "text[]") == []


@pytest.mark.parametrize(
    ("build", "values"),
    [
        (numeric_array, [5.0]),  # a float's binary error must not reach money
        (numeric_array, [Decimal("NaN")]),
        (numeric_array, [True]),  # a bool is an int to Python, never an amount
        (timestamp_array, [datetime(2026, 1, 1)]),  # naive: which instant is meant is unknown
    ],
)
def test_values_that_would_be_misread_are_refused(build, values):
    with pytest.raises(ValueError):
        build(values)
