"""Every API list answers in a number of queries that does not grow with the page size."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bnpl.choices import OrderStatus
from bnpl.services import agreement_sign
from merchants.choices import ConfirmMode
from tests.bnpl.helpers import order_in
from tests.factories import ConsumerFactory, ListingFactory


@pytest.fixture
def many_rows(merchant_a, each_time_listing):
    for i in range(12):
        order = order_in(OrderStatus.COMPLETED, listing=each_time_listing, consumer=ConsumerFactory())
        order.bill_lines.create(name=f"line {i}", quantity=1, unit_price=5, amount=5)
        listing = ListingFactory(merchant=merchant_a, confirm_mode=ConfirmMode.AGREEMENT)
        agreement_sign(actor=None, consumer=ConsumerFactory(), listing=listing)


def _count(api, path: str, limit: int) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as queries:
        response = api.get(path, {"limit": limit})
    assert response.status_code == 200
    return len(queries), len(response.json()["data"])


@pytest.mark.parametrize("path", ["/api/v1/orders", "/api/v1/agreements", "/api/v1/listings"])
def test_list_queries_are_constant_in_page_size(api_a, many_rows, path):
    api_a.get(path)  # the first request of a key also records its last use

    small, small_rows = _count(api_a, path, 2)
    large, large_rows = _count(api_a, path, 12)

    assert (small_rows, large_rows) == (2, 12)
    assert small == large
    assert large <= 5  # key lookup, rate window, page (and, for orders, the bill lines in one query)
