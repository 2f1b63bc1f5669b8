"""Bad input answers 4xx in the one error format with a stable code, and changes nothing."""

from __future__ import annotations

import pytest

from bnpl.models import CreditOrder, UsageEvent
from tests.api.conftest import error_of
from tests.bnpl.helpers import snapshot


def test_malformed_json_is_400_malformed_json(api_a, each_time_listing):
    response = api_a.post("/api/v1/orders", raw='{"listing_id": 1,')

    assert response.status_code == 400
    assert error_of(response) == {
        "code": "malformed_json",
        "message": "The request body is not valid JSON.",
        "fields": {},
    }
    assert CreditOrder.objects.count() == 0


def test_body_that_is_not_an_object_is_refused(api_a):
    response = api_a.post("/api/v1/orders", [1, 2])

    assert response.status_code == 400
    assert error_of(response)["code"] == "validation_failed"


def test_unknown_field_is_refused(api_a, each_time_listing):
    response = api_a.post(
        "/api/v1/orders", {"listing_id": each_time_listing.pk, "out_order_no": "X-1", "max_amout": "5.00"}
    )

    assert response.status_code == 400
    assert error_of(response)["code"] == "unknown_field"
    assert error_of(response)["fields"] == {"max_amout": "Unknown field."}
    assert CreditOrder.objects.count() == 0


def test_unknown_field_in_a_bill_line_is_refused(api_a, active_order):
    before = snapshot(active_order)

    response = api_a.post(
        f"/api/v1/orders/{active_order.pk}/complete", {"lines": [{"name": "a", "amount": "1.00", "price": "1"}]}
    )

    assert response.status_code == 400
    assert error_of(response)["code"] == "unknown_field"
    assert error_of(response)["fields"] == {"lines[].price": "Unknown field."}
    assert snapshot(active_order) == before


@pytest.mark.parametrize("amount", ["12.505", "1e3", "-1.00", "abc", 12.5, 12])
def test_amounts_must_be_decimal_strings_with_two_places(api_a, each_time_listing, amount):
    response = api_a.post(
        "/api/v1/orders", {"listing_id": each_time_listing.pk, "out_order_no": "X-1", "max_amount": amount}
    )

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "validation_failed"
    assert list(error["fields"]) == ["max_amount"]
    assert CreditOrder.objects.count() == 0


def test_bill_line_amount_with_three_places_is_refused(api_a, active_order):
    before = snapshot(active_order)

    response = api_a.post(f"/api/v1/orders/{active_order.pk}/complete", {"lines": [{"name": "a", "amount": "1.005"}]})

    assert response.status_code == 400
    assert error_of(response)["fields"] == {
        "lines[0].amount": 'Give the amount as a decimal string with at most two decimal places, such as "12.50".'
    }
    assert snapshot(active_order) == before


def test_negative_usage_quantity_is_refused(api_a, active_order):
    response = api_a.post(
        f"/api/v1/orders/{active_order.pk}/usage",
        {"merchant_event_id": "e1", "quantity": "-1", "occurred_at": "2026-11-25T20:00:00+08:00"},
    )

    assert response.status_code == 400
    assert error_of(response)["code"] == "validation_failed"
    assert list(error_of(response)["fields"]) == ["quantity"]
    assert UsageEvent.objects.count() == 0


def test_negative_bill_line_quantity_is_refused(api_a, active_order):
    before = snapshot(active_order)

    response = api_a.post(
        f"/api/v1/orders/{active_order.pk}/complete",
        {"lines": [{"name": "a", "quantity": "-2", "unit_price": "1.00", "amount": "2.00"}]},
    )

    assert response.status_code == 400
    assert list(error_of(response)["fields"]) == ["lines[0].quantity"]
    assert snapshot(active_order) == before


def test_naive_usage_time_is_refused(api_a, active_order):
    response = api_a.post(
        f"/api/v1/orders/{active_order.pk}/usage",
        {"merchant_event_id": "e1", "quantity": "1", "occurred_at": "2026-11-25T20:00:00"},
    )

    assert response.status_code == 400
    assert list(error_of(response)["fields"]) == ["occurred_at"]


def test_completion_above_the_cap_is_refused_and_changes_nothing(api_a, active_order):
    before = snapshot(active_order)

    response = api_a.post(
        f"/api/v1/orders/{active_order.pk}/complete", {"lines": [{"name": "充电", "amount": "20.01"}]}
    )

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "amount_exceeds_cap"
    assert error["message"] == "The bill of 20.01 exceeds the order's maximum of 20.00."
    assert snapshot(active_order) == before


def test_action_the_state_does_not_allow_is_409_invalid_state(api_a, active_order):
    api_a.post(f"/api/v1/orders/{active_order.pk}/cancel", {"reason": "gone"})
    before = snapshot(active_order)

    response = api_a.post(f"/api/v1/orders/{active_order.pk}/complete", {"lines": [{"name": "a", "amount": "1.00"}]})

    assert response.status_code == 409
    assert error_of(response)["code"] == "invalid_state"
    assert error_of(response)["message"] == "order A-ACTIVE-1 is cancelled; it cannot be completed"
    assert snapshot(active_order) == before


def test_usage_on_a_finished_order_is_409(api_a, active_order):
    api_a.post(f"/api/v1/orders/{active_order.pk}/cancel", {"reason": "gone"})

    response = api_a.post(
        f"/api/v1/orders/{active_order.pk}/usage",
        {"merchant_event_id": "late", "quantity": "1", "occurred_at": "2026-11-25T20:00:00+08:00"},
    )

    assert response.status_code == 409
    assert error_of(response)["code"] == "invalid_state"
    assert error_of(response)["fields"] == {"order_id": "order A-ACTIVE-1 is cancelled; it cannot be given usage"}
    assert UsageEvent.objects.count() == 0


def test_duplicate_out_order_no_is_409(api_a, each_time_listing):
    api_a.post("/api/v1/orders", {"listing_id": each_time_listing.pk, "out_order_no": "D-1"})

    response = api_a.post("/api/v1/orders", {"listing_id": each_time_listing.pk, "out_order_no": "D-1"})

    assert response.status_code == 409
    assert error_of(response)["code"] == "duplicate_out_order_no"
    assert CreditOrder.objects.count() == 1


def test_missing_required_field_names_it(api_a):
    response = api_a.post("/api/v1/orders", {"out_order_no": "X"})

    assert response.status_code == 400
    assert error_of(response) == {
        "code": "validation_failed",
        "message": "The request has errors.",
        "fields": {"listing_id": "This field is required."},
    }


def test_missing_idempotency_key_is_400(api_a, each_time_listing):
    response = api_a.post("/api/v1/orders", {"listing_id": each_time_listing.pk, "out_order_no": "K-1"}, key=False)

    assert response.status_code == 400
    assert error_of(response)["code"] == "idempotency_key_missing"
    assert CreditOrder.objects.count() == 0


def test_idempotency_key_too_long_is_400(api_a, each_time_listing):
    response = api_a.post("/api/v1/orders", {"listing_id": each_time_listing.pk, "out_order_no": "K-1"}, key="k" * 256)

    assert response.status_code == 400
    assert error_of(response)["code"] == "idempotency_key_invalid"


def test_wrong_method_is_405(api_a):
    response = api_a.client.delete("/api/v1/orders", headers=api_a.headers())

    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


def test_unknown_path_is_json_404(api_a):
    response = api_a.get("/api/v1/nothing/here")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_id_beyond_bigint_is_404_not_500(api_a):
    response = api_a.get(f"/api/v1/orders/{2**70}")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"
