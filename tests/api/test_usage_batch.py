"""The usage batch: up to 1,000 events in one transaction, all or nothing, idempotent on event ids."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bnpl.models import CreditOrder, UsageEvent
from bnpl.services import agreement_sign
from merchants.choices import ConfirmMode
from tests.api.conftest import error_of, make_api
from tests.bnpl.helpers import run_concurrently, snapshot
from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory

WHEN = "2026-11-25T20:00:00+08:00"


def _event(order, n, quantity="1", **extra):
    return {"order_id": order.pk, "merchant_event_id": f"e-{n}", "quantity": quantity, "occurred_at": WHEN, **extra}


def test_a_thousand_events_in_one_request_with_constant_queries(api_a, active_order):
    events = [_event(active_order, n, properties={"pile": n % 7}) for n in range(1000)]

    with CaptureQueriesContext(connection) as queries:
        response = api_a.post("/api/v1/usage/batch", {"events": events})

    assert response.status_code == 200
    assert response.json() == {"received": 1000, "created": 1000, "duplicates": []}
    assert UsageEvent.objects.filter(order=active_order).count() == 1000
    assert UsageEvent.objects.get(merchant_event_id="e-8").properties == {"pile": 1}
    assert len(queries) <= 15  # auth, rate, claim, lock orders, read ids, one insert, store response


def test_replayed_events_are_listed_not_counted(api_a, active_order):
    api_a.post("/api/v1/usage/batch", {"events": [_event(active_order, n) for n in range(3)]})

    response = api_a.post("/api/v1/usage/batch", {"events": [_event(active_order, n) for n in range(5)]})

    assert response.json() == {"received": 5, "created": 2, "duplicates": ["e-0", "e-1", "e-2"]}
    assert UsageEvent.objects.count() == 5


def test_events_may_name_orders_by_out_order_no(api_a, active_order):
    event = {"out_order_no": "A-ACTIVE-1", "merchant_event_id": "x", "quantity": "2.5", "occurred_at": WHEN}

    response = api_a.post("/api/v1/usage/batch", {"events": [event]})

    assert response.status_code == 200
    assert UsageEvent.objects.get().quantity == Decimal("2.5000")


def test_one_bad_event_refuses_the_whole_batch(api_a, active_order):
    before = snapshot(active_order)
    events = [_event(active_order, 0), _event(active_order, 1, quantity="-3"), _event(active_order, 2)]

    response = api_a.post("/api/v1/usage/batch", {"events": events})

    assert response.status_code == 400
    assert list(error_of(response)["fields"]) == ["events[1].quantity"]
    assert snapshot(active_order) == before


def test_unknown_order_refuses_the_batch_with_404(api_a, active_order):
    events = [_event(active_order, 0), {**_event(active_order, 1), "order_id": 999_999}]

    response = api_a.post("/api/v1/usage/batch", {"events": events})

    assert response.status_code == 404
    assert error_of(response)["code"] == "order_not_found"
    assert error_of(response)["fields"] == {"events[1].order_id": "No such order."}
    assert UsageEvent.objects.count() == 0


def test_same_id_twice_with_different_content_is_409(api_a, active_order):
    events = [_event(active_order, 0), _event(active_order, 0, quantity="2")]

    response = api_a.post("/api/v1/usage/batch", {"events": events})

    assert response.status_code == 409
    assert error_of(response)["code"] == "duplicate_event_conflict"
    assert UsageEvent.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": []}, "events"),
        ({"events": [{}] * 1001}, "events"),
        ({"events": "x"}, "events"),
        (
            {"events": [{"order_id": 1, "merchant_event_id": "a", "quantity": 1.5, "occurred_at": WHEN}]},
            "events[0].quantity",
        ),
        (
            {"events": [{"order_id": 1, "merchant_event_id": "a", "quantity": "1", "occurred_at": "2026-11-25"}]},
            "events[0].occurred_at",
        ),
        (
            {"events": [{"order_id": "1", "merchant_event_id": "a", "quantity": "1", "occurred_at": WHEN}]},
            "events[0].order_id",
        ),
    ],
)
def test_malformed_batches_are_400(api_a, body, field):
    response = api_a.post("/api/v1/usage/batch", body)

    assert response.status_code == 400
    assert field in error_of(response)["fields"]


def test_unknown_event_field_is_refused(api_a, active_order):
    response = api_a.post("/api/v1/usage/batch", {"events": [_event(active_order, 0, qty="1")]})

    assert response.status_code == 400
    assert error_of(response)["code"] == "unknown_field"
    assert error_of(response)["fields"] == {"events[0].qty": "Unknown field."}


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_with_overlapping_ids_record_each_event_once():
    merchant = MerchantFactory()
    listing = ListingFactory(merchant=merchant, confirm_mode=ConfirmMode.AGREEMENT)
    consumer = ConsumerFactory()
    agreement_sign(actor=None, consumer=consumer, listing=listing)
    api = make_api(merchant)
    api.post("/api/v1/orders", {"listing_id": listing.pk, "out_order_no": "O", "consumer_id": consumer.pk})
    order = CreditOrder.objects.get(out_order_no="O")
    first = [_event(order, n) for n in range(0, 300)]
    second = [_event(order, n) for n in range(150, 450)]

    results = run_concurrently(
        lambda: api.post("/api/v1/usage/batch", {"events": first}),
        lambda: api.post("/api/v1/usage/batch", {"events": second}),
    )

    assert [r.status_code for r in results] == [200, 200]
    assert sum(r.json()["created"] for r in results) == 450
    assert sum(len(r.json()["duplicates"]) for r in results) == 150
    assert UsageEvent.objects.count() == 450
