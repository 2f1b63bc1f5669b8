"""Credit orders through the API: create, query, list, usage, complete, cancel, sync."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from bnpl.choices import OrderStatus
from bnpl.models import BillLine, CreditOrder, OrderEvent, UsageEvent
from tests.api.conftest import error_of
from tests.bnpl.helpers import exposure, order_in


def test_create_each_time_order_returns_hosted_confirmation_url(api_a, each_time_listing, settings):
    settings.SITE_URL = "https://pay.example.com"

    response = api_a.post(
        "/api/v1/orders", {"listing_id": each_time_listing.pk, "out_order_no": "EXP-1", "max_amount": "15.50"}
    )

    assert response.status_code == 201
    body = response.json()
    order = CreditOrder.objects.get(pk=body["id"])
    assert body["status"] == "pending_confirmation"
    assert body["confirmation_url"] == f"https://pay.example.com/pay/confirm/{order.confirmation_token}"
    assert body["max_amount"] == "15.50"
    assert body["amount_due"] is None
    assert body["livemode"] is True
    assert body["consumer_id"] is None
    assert body["created_at"].endswith("+08:00")
    assert order.out_order_no == "EXP-1"
    assert order.max_amount == Decimal("15.50")


def test_create_under_agreement_is_assessed_at_once(api_a, agreement_a, agreement_listing_a, live_consumer):
    response = api_a.post(
        "/api/v1/orders",
        {"listing_id": agreement_listing_a.pk, "out_order_no": "CHG-1", "consumer_id": live_consumer.pk},
    )

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "active"
    assert body["agreement_id"] == agreement_a.pk
    assert body["decision"]["outcome"] == "approved"
    assert body["confirmation_url"] is None
    assert exposure(live_consumer) == Decimal("20.00")


def test_declined_order_comes_back_with_reasons(api_a, agreement_a, agreement_listing_a, live_consumer):
    live_consumer.credit_profile.score = 500
    live_consumer.credit_profile.save(update_fields=["score"])

    response = api_a.post(
        "/api/v1/orders",
        {"listing_id": agreement_listing_a.pk, "out_order_no": "CHG-2", "consumer_id": live_consumer.pk},
    )

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "declined"
    assert body["decision"]["outcome"] == "declined"
    assert [reason["code"] for reason in body["decision"]["reasons"]] == ["score_below_minimum"]
    assert exposure(live_consumer) == Decimal("0.00")


def test_query_by_id_and_by_out_order_no(api_a, active_order):
    by_id = api_a.get(f"/api/v1/orders/{active_order.pk}")
    by_number = api_a.get("/api/v1/orders/by-out-order-no/A-ACTIVE-1")

    assert by_id.status_code == by_number.status_code == 200
    assert by_id.json() == by_number.json()
    assert by_id.json()["id"] == active_order.pk


def test_unknown_out_order_no_is_404(api_a, active_order):
    response = api_a.get("/api/v1/orders/by-out-order-no/NOPE")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_list_filters_and_cursor_pagination(api_a, each_time_listing):
    orders = [
        order_in(OrderStatus.PENDING_CONFIRMATION, listing=each_time_listing, out_order_no=f"L-{i}") for i in range(5)
    ]
    cancelled = order_in(OrderStatus.CANCELLED, listing=each_time_listing, out_order_no="L-X")
    # Spread the creation times so the order is deterministic, newest last created.
    base = timezone.now() - timedelta(hours=1)
    for i, order in enumerate([*orders, cancelled]):
        CreditOrder.objects.filter(pk=order.pk).update(created_at=base + timedelta(minutes=i))

    first = api_a.get("/api/v1/orders", {"limit": 2, "status": "pending_confirmation"})
    assert first.status_code == 200
    page1 = first.json()
    assert [row["out_order_no"] for row in page1["data"]] == ["L-4", "L-3"]
    assert page1["has_more"] is True
    page2 = api_a.get(
        "/api/v1/orders", {"limit": 2, "status": "pending_confirmation", "cursor": page1["next_cursor"]}
    ).json()
    assert [row["out_order_no"] for row in page2["data"]] == ["L-2", "L-1"]
    page3 = api_a.get(
        "/api/v1/orders", {"limit": 2, "status": "pending_confirmation", "cursor": page2["next_cursor"]}
    ).json()
    assert [row["out_order_no"] for row in page3["data"]] == ["L-0"]
    assert page3["has_more"] is False
    assert page3["next_cursor"] is None

    by_number = api_a.get("/api/v1/orders", {"out_order_no": "L-X"}).json()
    assert [row["id"] for row in by_number["data"]] == [cancelled.pk]
    window = api_a.get(
        "/api/v1/orders",
        {
            "created_after": (base + timedelta(minutes=1)).isoformat(),
            "created_before": (base + timedelta(minutes=3)).isoformat(),
        },
    ).json()
    assert [row["out_order_no"] for row in window["data"]] == ["L-2", "L-1"]


def test_list_refuses_naive_time_and_bad_cursor(api_a):
    naive = api_a.get("/api/v1/orders", {"created_after": "2026-11-25T10:00:00"})
    bad_cursor = api_a.get("/api/v1/orders", {"cursor": "not-a-cursor"})
    bad_limit = api_a.get("/api/v1/orders", {"limit": "1000"})

    assert naive.status_code == bad_cursor.status_code == bad_limit.status_code == 400
    assert error_of(naive)["fields"] == {
        "created_after": "Give the time in ISO 8601 with its UTC offset, e.g. 2026-11-25T20:15:00+08:00."
    }
    assert error_of(bad_cursor)["code"] == "invalid_cursor"
    assert list(error_of(bad_limit)["fields"]) == ["limit"]


def test_usage_single_event_is_idempotent_on_event_id(api_a, active_order):
    body = {"merchant_event_id": "sess-1", "quantity": "2", "occurred_at": "2026-11-25T22:00:00+08:00"}

    first = api_a.post(f"/api/v1/orders/{active_order.pk}/usage", body)
    again = api_a.post(f"/api/v1/orders/{active_order.pk}/usage", body)  # a new Idempotency-Key

    assert first.status_code == 201
    assert first.json()["duplicate"] is False
    assert first.json()["quantity"] == "2"
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["id"] == first.json()["id"]
    assert UsageEvent.objects.filter(order=active_order).count() == 1


def test_usage_event_id_reused_for_other_quantity_is_409(api_a, active_order):
    body = {"merchant_event_id": "sess-1", "quantity": "2", "occurred_at": "2026-11-25T22:00:00+08:00"}
    api_a.post(f"/api/v1/orders/{active_order.pk}/usage", body)

    response = api_a.post(f"/api/v1/orders/{active_order.pk}/usage", {**body, "quantity": "3"})

    assert response.status_code == 409
    assert error_of(response)["code"] == "duplicate_event_conflict"
    assert list(error_of(response)["fields"]) == ["merchant_event_id"]
    assert list(UsageEvent.objects.values_list("quantity", flat=True)) == [Decimal("2.0000")]


def test_complete_with_bill_lines_and_discounts(api_a, active_order, live_consumer):
    response = api_a.post(
        f"/api/v1/orders/{active_order.pk}/complete",
        {
            "lines": [
                {"name": "使用时长", "quantity": "3", "unit": "hour", "unit_price": "1.00", "amount": "3.00"},
                {"name": "服务费", "amount": "0.50"},
            ],
            "discounts": [{"name": "新客立减", "amount": "1.00"}],
        },
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "completed"
    assert body["amount_due"] == "2.50"
    assert [(line["name"], line["amount"], line["is_discount"]) for line in body["bill_lines"]] == [
        ("使用时长", "3.00", False),
        ("服务费", "0.50", False),
        ("新客立减", "1.00", True),
    ]
    assert exposure(live_consumer) == Decimal("2.50")


def test_complete_from_reported_usage(api_a, active_order):
    for i, quantity in enumerate(["1", "1.5"]):
        api_a.post(
            f"/api/v1/orders/{active_order.pk}/usage",
            {"merchant_event_id": f"u{i}", "quantity": quantity, "occurred_at": timezone.now().isoformat()},
        )

    response = api_a.post(f"/api/v1/orders/{active_order.pk}/complete", {})

    assert response.status_code == 200
    assert response.json()["amount_due"] == "3.00"  # 2.5 hours, a started hour is billed


def test_cancel_with_reason(api_a, active_order, live_consumer):
    response = api_a.post(f"/api/v1/orders/{active_order.pk}/cancel", {"reason": "user left"})

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["close_reason"] == "user left"
    assert exposure(live_consumer) == Decimal("0.00")
    event = OrderEvent.objects.filter(order=active_order).latest("id")
    assert (event.actor_id, event.actor_kind, event.to_status) == (None, "merchant", "cancelled")


def test_sync_marks_paid_elsewhere(api_a, active_order):
    api_a.post(f"/api/v1/orders/{active_order.pk}/complete", {"lines": [{"name": "充电", "amount": "4.00"}]})

    response = api_a.post(f"/api/v1/orders/{active_order.pk}/sync", {"reason": "paid at the counter"})

    assert response.status_code == 200
    assert response.json()["status"] == "paid"
    assert BillLine.objects.filter(order=active_order).count() == 1
