"""The order object the API answers with: ``order_data`` (built directly) against ``OrderOut`` (the schema's shape).

``POST /api/v1/orders`` builds its answer from the objects the service hands back instead of reading the
order again; these tests hold that answer to the one a later read of the stored order gives, byte for byte.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bnpl.api import serializers as s
from bnpl.choices import OrderStatus
from bnpl.models import CreditOrder
from tests.bnpl.helpers import order_in
from tests.factories import ConsumerFactory

pytestmark = pytest.mark.django_db


def _stored(order_id: int) -> CreditOrder:
    return CreditOrder.objects.select_related("decision", "consumer").prefetch_related("bill_lines").get(pk=order_id)


@pytest.mark.parametrize(
    "status", [OrderStatus.PENDING_CONFIRMATION, OrderStatus.ACTIVE, OrderStatus.COMPLETED, OrderStatus.CANCELLED]
)
def test_order_data_is_what_the_serializer_gives(status, each_time_listing, settings):
    settings.SITE_URL = "https://pay.example.com/"
    order = order_in(status, listing=each_time_listing, consumer=ConsumerFactory())
    order.bill_lines.create(name="首重费", quantity=Decimal("1.5000"), unit="kg", unit_price=12, amount=Decimal("18"))
    order.bill_lines.create(name="新客立减", quantity=1, unit_price=2, amount=2, is_discount=True)

    order = _stored(order.pk)

    assert s.order_data(order) == s.OrderOut(order).data


def test_order_data_without_consumer_and_with_a_sandbox_consumer(each_time_listing):
    anonymous = _stored(order_in(OrderStatus.PENDING_CONFIRMATION, listing=each_time_listing).pk)
    sandbox = _stored(
        order_in(OrderStatus.ACTIVE, listing=each_time_listing, consumer=ConsumerFactory(is_sandbox=True)).pk
    )

    for order in (anonymous, sandbox):
        assert s.order_data(order) == s.OrderOut(order).data
    assert (s.order_data(anonymous)["livemode"], s.order_data(sandbox)["livemode"]) == (True, False)


def _create_then_get(api, body: dict) -> tuple[bytes, bytes]:
    created = api.post("/api/v1/orders", body)
    assert created.status_code == 201, created.content
    read = api.get(f"/api/v1/orders/{created.json()['id']}")
    assert read.status_code == 200
    return created.content, read.content


def test_created_order_answers_what_a_read_of_it_gives(api_a, agreement_a, agreement_listing_a, live_consumer):
    created, read = _create_then_get(
        api_a, {"listing_id": agreement_listing_a.pk, "out_order_no": "BODY-1", "consumer_id": live_consumer.pk}
    )

    assert json.loads(created)["status"] == "active"
    assert created == read


def test_declined_order_answers_what_a_read_of_it_gives(api_a, agreement_a, agreement_listing_a, live_consumer):
    profile = live_consumer.credit_profile
    profile.score, profile.credit_limit_amount = 500, Decimal("10.00")
    profile.save(update_fields=["score", "credit_limit_amount"])

    created, read = _create_then_get(
        api_a, {"listing_id": agreement_listing_a.pk, "out_order_no": "BODY-2", "consumer_id": live_consumer.pk}
    )

    reasons = json.loads(created)["decision"]["reasons"]
    assert [reason["code"] for reason in reasons] == ["score_below_minimum", "insufficient_limit"]
    assert created == read  # the reasons' keys in the order the stored decision gives them back


def test_created_pending_order_answers_what_a_read_of_it_gives(api_a, each_time_listing, settings):
    settings.SITE_URL = "https://pay.example.com"
    created, read = _create_then_get(
        api_a, {"listing_id": each_time_listing.pk, "out_order_no": "BODY-3", "max_amount": "7", "title": " T "}
    )

    body = json.loads(created)
    assert (body["status"], body["max_amount"], body["title"]) == ("pending_confirmation", "7.00", "T")
    assert body["confirmation_url"].startswith("https://pay.example.com/pay/confirm/")
    assert created == read


def test_created_sandbox_order_answers_what_a_read_of_it_gives(test_api_a, agreement_listing_a, sandbox_consumer):
    from bnpl.services import agreement_sign

    agreement_sign(actor=None, consumer=sandbox_consumer, listing=agreement_listing_a)
    created, read = _create_then_get(
        test_api_a, {"listing_id": agreement_listing_a.pk, "out_order_no": "BODY-4", "consumer_id": sandbox_consumer.pk}
    )

    assert json.loads(created)["livemode"] is False
    assert created == read


def test_admission_post_does_not_read_the_order_back(api_a, agreement_a, agreement_listing_a, live_consumer):
    api_a.get("/api/v1/orders")  # the key's first use records it; not part of what is counted
    body = {"listing_id": agreement_listing_a.pk, "out_order_no": "BODY-5", "consumer_id": live_consumer.pk}

    with CaptureQueriesContext(connection) as queries:
        response = api_a.post("/api/v1/orders", body)

    assert response.status_code == 201
    order_id = response.json()["id"]
    order_table = CreditOrder._meta.db_table
    reads_of_the_order = [q["sql"] for q in queries.captured_queries if q["sql"].startswith(f'SELECT "{order_table}".')]
    assert reads_of_the_order == [], reads_of_the_order
    assert CreditOrder.objects.get(pk=order_id).status == OrderStatus.ACTIVE
