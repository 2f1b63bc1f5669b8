"""Merchant API after completion: refunds, modify, collect, settlements and statements."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from bnpl.models import CreditOrder, OrderEvent, Refund
from bnpl.settlement import settle_merchants
from tests.api.conftest import error_of
from tests.bnpl.charging_helpers import due_order
from tests.bnpl.partb_helpers import charged_order
from tests.factories import ListingFactory

D = Decimal
pytestmark = pytest.mark.django_db


@pytest.fixture
def listing_a(merchant_a):
    return ListingFactory(merchant=merchant_a, max_amount=D("500.00"))


def test_refund_endpoint_refunds_and_replays(api_a, listing_a, live_consumer):
    order = charged_order(listing_a, live_consumer, amount="50.00")
    body = {"amount": "20.00", "reason": "returned", "out_refund_no": "R-1"}
    response = api_a.post(f"/api/v1/orders/{order.pk}/refunds", body, key="idem-1")
    assert response.status_code == 201, response.content
    data = response.json()
    assert (data["amount"], data["status"], data["out_refund_no"]) == ("20.00", "succeeded", "R-1")
    again = api_a.post(f"/api/v1/orders/{order.pk}/refunds", body, key="idem-1")
    assert again.status_code == 201
    assert again.json()["id"] == data["id"]
    assert Refund.objects.count() == 1
    assert CreditOrder.objects.get(pk=order.pk).status == "partially_refunded"


def test_refund_above_charged_is_400_and_other_merchant_is_404(api_a, api_b, listing_a, live_consumer):
    order = charged_order(listing_a, live_consumer, amount="50.00")
    response = api_a.post(
        f"/api/v1/orders/{order.pk}/refunds", {"amount": "50.01", "reason": "x", "out_refund_no": "R-2"}
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "refund_exceeds_charged"
    other = api_b.post(f"/api/v1/orders/{order.pk}/refunds", {"amount": "1.00", "reason": "x", "out_refund_no": "R"})
    assert other.status_code == 404
    assert Refund.objects.count() == 0


def test_modify_lowers_the_amount(api_a, listing_a, live_consumer):
    order = due_order(listing_a, live_consumer, amount="30.00")
    response = api_a.post(f"/api/v1/orders/{order.pk}/modify", {"amount": "25.00", "reason": "coupon"})
    assert response.status_code == 200, response.content
    assert response.json()["amount_due"] == "25.00"
    raised = api_a.post(f"/api/v1/orders/{order.pk}/modify", {"amount": "26.00", "reason": "oops"})
    assert raised.status_code == 400
    assert CreditOrder.objects.get(pk=order.pk).amount_due == D("25.00")


def test_collect_schedules_an_attempt(api_a, listing_a, live_consumer):
    later = timezone.now() + timedelta(hours=3)
    order = due_order(listing_a, live_consumer, amount="30.00", status="collecting", next_attempt_at=later)
    response = api_a.post(f"/api/v1/orders/{order.pk}/collect", {})
    assert response.status_code == 200, response.content
    assert CreditOrder.objects.get(pk=order.pk).next_attempt_at <= timezone.now()
    assert OrderEvent.objects.filter(order=order, data__event="collect_requested").count() == 1
    again = api_a.post(f"/api/v1/orders/{order.pk}/collect", {})
    assert again.status_code in (403, 409)
    assert error_of(again)["code"] == "collection_already_due"


def test_settlements_list_and_statement_are_merchant_scoped(api_a, api_b, listing_a, live_consumer):
    charged_order(listing_a, live_consumer, amount="40.00")
    [batch_id] = settle_merchants(business_date=timezone.localdate())
    listed = api_a.get("/api/v1/settlements")
    assert listed.status_code == 200
    [row] = listed.json()["data"]
    assert (row["id"], row["gross_amount"], row["net_amount"], row["payout_status"]) == (
        batch_id,
        "40.00",
        "39.76",
        "pending",
    )
    assert api_b.get("/api/v1/settlements").json()["data"] == []
    statement = api_a.get(f"/api/v1/settlements/{batch_id}/statement.csv")
    assert statement.status_code == 200
    assert statement["Content-Type"].startswith("text/csv")
    assert statement.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(statement.content.decode("utf-8-sig"))))
    assert rows[-1][-1] == "39.76"
    assert api_b.get(f"/api/v1/settlements/{batch_id}/statement.csv").status_code == 404
