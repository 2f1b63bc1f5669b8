"""Invariant 5 through the API: merchant B's key never reaches merchant A's rows (404, as if absent)."""

from __future__ import annotations

import pytest

from bnpl.models import AgreementSignup, CreditOrder, UsageEvent
from bnpl.services import agreement_signup_create
from merchants.models import Listing
from tests.api.conftest import error_of
from tests.bnpl.helpers import snapshot


@pytest.fixture
def a_rows(api_a, active_order, agreement_a, agreement_listing_a, each_time_listing, merchant_a):
    signup = agreement_signup_create(
        actor=None, merchant=merchant_a, listing=agreement_listing_a, out_agreement_no="AGR-A"
    )
    return {
        "order": active_order,
        "agreement": agreement_a,
        "listing": agreement_listing_a,
        "each_time_listing": each_time_listing,
        "signup": signup,
    }


def _requests(rows):
    order, agreement, listing, signup = rows["order"], rows["agreement"], rows["listing"], rows["signup"]
    usage = {"merchant_event_id": "x", "quantity": "1", "occurred_at": "2026-11-25T20:00:00+08:00"}
    return [
        ("get", f"/api/v1/orders/{order.pk}", None),
        ("get", f"/api/v1/orders/by-out-order-no/{order.out_order_no}", None),
        ("post", f"/api/v1/orders/{order.pk}/usage", usage),
        ("post", f"/api/v1/orders/{order.pk}/complete", {"lines": [{"name": "a", "amount": "1.00"}]}),
        ("post", f"/api/v1/orders/{order.pk}/cancel", {"reason": "x"}),
        ("post", f"/api/v1/orders/{order.pk}/sync", {"reason": "x"}),
        ("post", "/api/v1/usage/batch", {"events": [{**usage, "order_id": order.pk}]}),
        ("post", "/api/v1/usage/batch", {"events": [{**usage, "out_order_no": order.out_order_no}]}),
        ("get", f"/api/v1/agreements/{agreement.pk}", None),
        ("post", f"/api/v1/agreements/{agreement.pk}/close", {}),
        ("get", f"/api/v1/agreement-signups/{signup.pk}", None),
        ("post", "/api/v1/agreement-signups", {"listing_id": listing.pk, "out_agreement_no": "B-1"}),
        ("post", "/api/v1/orders", {"listing_id": listing.pk, "out_order_no": "B-1", "consumer_id": order.consumer_id}),
        ("post", "/api/v1/orders", {"listing_id": rows["each_time_listing"].pk, "out_order_no": "B-2"}),
        ("get", f"/api/v1/listings/{listing.pk}", None),
        ("patch", f"/api/v1/listings/{listing.pk}", {"title": "stolen"}),
        ("post", f"/api/v1/listings/{listing.pk}/pause", {}),
        ("post", f"/api/v1/listings/{listing.pk}/resume", {}),
    ]


def test_every_endpoint_answers_404_for_another_merchants_ids(api_b, a_rows, merchant_b):
    order = a_rows["order"]
    before = snapshot(order)
    listings_before = list(Listing.objects.order_by("pk").values())

    results = []
    for method, path, body in _requests(a_rows):
        response = getattr(api_b, method)(path, body) if body is not None else getattr(api_b, method)(path)
        results.append((method, path, response.status_code, error_of(response)["code"]))

    assert all(status == 404 for _m, _p, status, _c in results), results
    assert {code for _m, _p, _s, code in results} == {"not_found", "order_not_found"}
    assert snapshot(order) == before
    assert list(Listing.objects.order_by("pk").values()) == listings_before
    assert UsageEvent.objects.count() == 0
    assert CreditOrder.objects.filter(merchant=merchant_b).count() == 0
    assert AgreementSignup.objects.count() == 1


def test_the_same_requests_work_for_the_owner(api_a, a_rows):
    # The 404s above are about the tenant, not about broken requests: A's own key reads them.
    for path in (
        f"/api/v1/orders/{a_rows['order'].pk}",
        f"/api/v1/agreements/{a_rows['agreement'].pk}",
        f"/api/v1/agreement-signups/{a_rows['signup'].pk}",
        f"/api/v1/listings/{a_rows['listing'].pk}",
    ):
        assert api_a.get(path).status_code == 200, path


def test_lists_never_show_another_merchants_rows(api_b, a_rows, merchant_b):
    from tests.factories import ListingFactory

    own = ListingFactory(merchant=merchant_b)

    orders = api_b.get("/api/v1/orders").json()
    agreements = api_b.get("/api/v1/agreements").json()
    listings = api_b.get("/api/v1/listings").json()
    filtered = api_b.get("/api/v1/orders", {"out_order_no": a_rows["order"].out_order_no}).json()

    assert orders == {"data": [], "has_more": False, "next_cursor": None}
    assert agreements == {"data": [], "has_more": False, "next_cursor": None}
    assert [row["id"] for row in listings["data"]] == [own.pk]
    assert filtered["data"] == []
