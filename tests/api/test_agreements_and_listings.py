"""Agreements (sign-up links, query, close) and listings (create, update, pause) through the API."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import time_machine
from django.utils import timezone

from bnpl.models import Agreement, AgreementSignup
from merchants.models import Listing
from tests.api.conftest import error_of


def test_signup_link_is_created_with_a_hosted_url(api_a, agreement_listing_a, settings):
    settings.SITE_URL = "https://pay.example.com/"

    response = api_a.post(
        "/api/v1/agreement-signups", {"listing_id": agreement_listing_a.pk, "out_agreement_no": "AGR-1"}
    )

    assert response.status_code == 201
    body = response.json()
    signup = AgreementSignup.objects.get()
    assert body["url"] == f"https://pay.example.com/pay/agreement/{signup.token}"
    assert body["status"] == "pending"
    assert body["livemode"] is True
    assert (body["consumer_id"], body["agreement_id"]) == (None, None)
    assert len(signup.token) >= 40
    again = api_a.get(f"/api/v1/agreement-signups/{signup.pk}")
    assert again.json() == body


def test_signup_link_shows_expired_after_its_deadline(api_a, agreement_listing_a):
    created = api_a.post(
        "/api/v1/agreement-signups", {"listing_id": agreement_listing_a.pk, "out_agreement_no": "AGR-1"}
    ).json()

    with time_machine.travel(timezone.now() + timedelta(hours=25)):
        later = api_a.get(f"/api/v1/agreement-signups/{created['id']}").json()

    assert later["status"] == "expired"


def test_signup_for_an_each_time_listing_or_a_used_number_is_refused(api_a, agreement_listing_a, each_time_listing):
    wrong_mode = api_a.post(
        "/api/v1/agreement-signups", {"listing_id": each_time_listing.pk, "out_agreement_no": "AGR-1"}
    )
    api_a.post("/api/v1/agreement-signups", {"listing_id": agreement_listing_a.pk, "out_agreement_no": "AGR-2"})
    reused = api_a.post(
        "/api/v1/agreement-signups", {"listing_id": agreement_listing_a.pk, "out_agreement_no": "AGR-2"}
    )

    assert wrong_mode.status_code == 400
    assert error_of(wrong_mode)["code"] == "not_agreement_listing"
    assert reused.status_code == 409
    assert error_of(reused)["code"] == "duplicate_out_agreement_no"
    assert AgreementSignup.objects.count() == 1


def test_agreement_query_and_close(api_a, agreement_a):
    listed = api_a.get("/api/v1/agreements", {"status": "valid"}).json()
    closed = api_a.post(f"/api/v1/agreements/{agreement_a.pk}/close", {"reason": "service ended"})

    assert [row["id"] for row in listed["data"]] == [agreement_a.pk]
    assert closed.status_code == 200
    assert closed.json()["status"] == "closed"
    assert closed.json()["close_reason"] == "service ended"
    assert Agreement.objects.get(pk=agreement_a.pk).status == "closed"


def test_agreement_close_is_refused_while_an_order_is_open(api_a, active_order, agreement_a):
    response = api_a.post(f"/api/v1/agreements/{agreement_a.pk}/close", {})

    assert response.status_code == 409
    assert error_of(response)["code"] == "order_open"
    assert Agreement.objects.get(pk=agreement_a.pk).status == "valid"


def test_listing_create_update_pause_resume(api_a, merchant_a):
    rule = {"kind": "per_unit", "unit": "hour", "unit_price": "1.00", "cap_per_24h": "10.00", "round_up": True}
    created = api_a.post(
        "/api/v1/listings",
        {"title": "充电桩", "scenario": "ebike_charging", "max_amount": "20.00", "pricing_rule": rule},
    )
    assert created.status_code == 201, created.content
    listing_id = created.json()["id"]

    updated = api_a.patch(f"/api/v1/listings/{listing_id}", {"max_amount": "30.00", "title": "充电桩 A"})
    paused = api_a.post(f"/api/v1/listings/{listing_id}/pause", {})
    paused_again = api_a.post(f"/api/v1/listings/{listing_id}/pause", {})
    resumed = api_a.post(f"/api/v1/listings/{listing_id}/resume", {})

    assert updated.status_code == 200
    assert (updated.json()["max_amount"], updated.json()["title"]) == ("30.00", "充电桩 A")
    assert paused.json()["status"] == "paused"
    assert paused_again.status_code == 409
    assert error_of(paused_again)["code"] == "invalid_state"
    assert resumed.json()["status"] == "active"
    listing = Listing.objects.get(pk=listing_id)
    assert (listing.merchant_id, listing.max_amount, listing.status) == (merchant_a.pk, Decimal("30.00"), "active")


def test_listing_with_an_invalid_rule_or_scenario_is_refused(api_a):
    response = api_a.post(
        "/api/v1/listings",
        {"title": "健身", "scenario": "swimming_fitness", "max_amount": "20.00", "pricing_rule": {"kind": "nope"}},
    )

    assert response.status_code == 400
    fields = error_of(response)["fields"]
    assert "scenario" in fields
    assert any(key.startswith("pricing_rule") for key in fields)
    assert Listing.objects.count() == 0
