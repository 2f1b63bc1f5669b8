"""bnpl/bulk_sql.py: COPY of plain values and the primary keys it reserves (real PostgreSQL)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from bnpl.bulk_sql import copy_tuples, reserve_pks
from bnpl.models import OrderEvent
from tests.bnpl.charging_helpers import due_order

pytestmark = pytest.mark.django_db

COLUMNS = ("order_id", "actor_id", "actor_kind", "from_status", "to_status", "reason", "data", "created_at")


def test_copy_tuples_writes_the_rows_under_the_ids_it_returns(listing, consumer):
    order = due_order(listing, consumer)
    now = timezone.now()
    ids = copy_tuples(
        OrderEvent,
        COLUMNS,
        [
            (order.pk, None, "system", "completed", "paid", "Charged", '{"attempt": "k1"}', now),
            (order.pk, None, "system", "paid", "refunded", "", "{}", now),
        ],
    )
    rows = {e.pk: (e.to_status, e.data) for e in OrderEvent.objects.filter(pk__in=ids)}
    assert rows == {ids[0]: ("paid", {"attempt": "k1"}), ids[1]: ("refunded", {})}
    assert copy_tuples(OrderEvent, COLUMNS, []) == []


def test_copy_tuples_refuses_a_column_list_that_leaves_a_column_out_or_names_an_unknown_one():
    with pytest.raises(ValueError, match="missing \\['created_at'\\]"):
        copy_tuples(OrderEvent, COLUMNS[:-1], [(1, None, "system", "", "paid", "", "{}")])
    with pytest.raises(ValueError, match="unknown \\['colour'\\]"):
        copy_tuples(OrderEvent, (*COLUMNS, "colour"), [(1,) * 9])


def test_reserved_keys_are_fresh_and_distinct():
    first, second = reserve_pks(OrderEvent, 3), reserve_pks(OrderEvent, 2)
    assert len(set(first + second)) == 5
    assert min(second) > max(first)
