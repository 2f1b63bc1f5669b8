"""API keys: authentication, revocation, last use, rate limits, and test/live separation."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.db.models import F
from django.utils import timezone

from bnpl.exceptions import NotAllowed
from bnpl.models import CreditOrder
from bnpl.services import agreement_sign
from merchants.choices import MerchantStatus
from merchants.models import ApiKey, ApiRateWindow, Listing
from merchants.services import api_key_create, api_key_hash, api_key_revoke
from tests.api.conftest import error_of
from tests.factories import MerchantFactory


def test_missing_key_is_401_authentication_required(client):
    response = client.get("/api/v1/orders")

    assert response.status_code == 401
    assert error_of(response)["code"] == "authentication_required"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize(
    "header",
    [
        "Basic abc",
        "Bearer ",
        "Bearer sk_live_nope",
        "Bearer sk_live_AAAAAAAAAAAA_" + "B" * 40,
    ],
)
def test_malformed_or_unknown_key_is_401_invalid_api_key(client, header, api_a):
    response = client.get("/api/v1/orders", headers={"Authorization": header})

    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_api_key"


def test_right_prefix_wrong_secret_is_401(client, api_a):
    prefix = api_a.token.rsplit("_", 1)[0]

    response = client.get("/api/v1/orders", headers={"Authorization": f"Bearer {prefix}_{'C' * 40}"})

    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_api_key"


def test_secret_is_stored_only_as_a_keyed_hash(merchant_a):
    key, token = api_key_create(actor=None, merchant=merchant_a, mode="live", label="pos")

    stored = ApiKey.objects.get(pk=key.pk)
    assert token.startswith(f"{stored.prefix}_")
    assert stored.secret_hash == api_key_hash(token)
    assert token not in str(ApiKey.objects.filter(pk=key.pk).values().first())


def test_revoked_key_is_401_api_key_revoked(merchant_a, api_a):
    key = ApiKey.objects.get(prefix=api_a.token.rsplit("_", 1)[0])
    api_key_revoke(actor=None, api_key=key)

    response = api_a.get("/api/v1/orders")

    assert response.status_code == 401
    assert error_of(response)["code"] == "api_key_revoked"


def test_last_used_is_written_at_most_once_a_minute(api_a):
    key = ApiKey.objects.get(prefix=api_a.token.rsplit("_", 1)[0])
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        api_a.get("/api/v1/orders")
        first = ApiKey.objects.get(pk=key.pk).last_used_at
    with time_machine.travel(start + timedelta(seconds=30), tick=False):
        api_a.get("/api/v1/orders")
        assert ApiKey.objects.get(pk=key.pk).last_used_at == first
    with time_machine.travel(start + timedelta(seconds=61), tick=False):
        api_a.get("/api/v1/orders")
        assert ApiKey.objects.get(pk=key.pk).last_used_at == start + timedelta(seconds=61)
    assert first == start


def test_live_key_needs_an_approved_merchant(db):
    merchant = MerchantFactory(status=MerchantStatus.SUBMITTED)

    with pytest.raises(NotAllowed) as refused:
        api_key_create(actor=None, merchant=merchant, mode="live")
    key, _token = api_key_create(actor=None, merchant=merchant, mode="test")

    assert refused.value.code == "merchant_unavailable"
    assert key.mode == "test"
    assert ApiKey.objects.filter(merchant=merchant).count() == 1


def _fill_current_window(key: ApiKey, count: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO merchants_apiratewindow (api_key_id, window_start, count) "
            "VALUES (%s, floor(extract(epoch FROM clock_timestamp()))::bigint, %s) "
            "ON CONFLICT (api_key_id) DO UPDATE SET window_start = EXCLUDED.window_start, count = EXCLUDED.count",
            [key.pk, count],
        )


def test_rate_limit_answers_429_with_retry_after(api_a, settings):
    settings.BNPL_API_RATE_LIMIT_LIVE = 3
    key = ApiKey.objects.get(prefix=api_a.token.rsplit("_", 1)[0])
    _fill_current_window(key, 3)

    response = api_a.get("/api/v1/orders")
    if response.status_code == 200:  # a second boundary passed in between: fill the new window and retry once
        _fill_current_window(key, 3)
        response = api_a.get("/api/v1/orders")

    assert response.status_code == 429
    assert response["Retry-After"] == "1"
    assert error_of(response)["code"] == "rate_limited"


def test_rate_limit_lets_the_next_window_through(api_a, settings):
    settings.BNPL_API_RATE_LIMIT_LIVE = 3
    key = ApiKey.objects.get(prefix=api_a.token.rsplit("_", 1)[0])
    _fill_current_window(key, 50)
    ApiRateWindow.objects.filter(api_key=key).update(window_start=F("window_start") - 1)

    response = api_a.get("/api/v1/orders")

    assert response.status_code == 200
    assert ApiRateWindow.objects.get(api_key=key).count == 1


def test_rate_limit_counts_per_key_in_one_second_windows(api_a, api_b, settings):
    settings.BNPL_API_RATE_LIMIT_LIVE = 1000
    for _ in range(3):
        api_a.get("/api/v1/listings")
    api_b.get("/api/v1/listings")

    counts = dict(ApiRateWindow.objects.values_list("api_key__prefix", "count"))
    prefix_a, prefix_b = api_a.token.rsplit("_", 1)[0], api_b.token.rsplit("_", 1)[0]
    # Three requests may straddle a second boundary; they never count against the other key.
    assert counts[prefix_b] == 1
    assert 1 <= counts[prefix_a] <= 3
    assert ApiRateWindow.objects.count() == 2


# --------------------------------------------------------------------------- test / live


@pytest.fixture
def sandbox_order(test_api_a, agreement_listing_a, sandbox_consumer):
    agreement_sign(actor=None, consumer=sandbox_consumer, listing=agreement_listing_a)
    response = test_api_a.post(
        "/api/v1/orders",
        {"listing_id": agreement_listing_a.pk, "out_order_no": "SBX-1", "consumer_id": sandbox_consumer.pk},
    )
    assert response.status_code == 201, response.content
    return CreditOrder.objects.get(pk=response.json()["id"])


def test_test_key_works_with_sandbox_consumers(sandbox_order, test_api_a):
    response = test_api_a.get(f"/api/v1/orders/{sandbox_order.pk}")

    assert response.status_code == 200
    assert response.json()["livemode"] is False
    assert response.json()["status"] == "active"


def test_test_key_on_live_data_is_403(test_api_a, active_order):
    before = CreditOrder.objects.get(pk=active_order.pk).status

    read = test_api_a.get(f"/api/v1/orders/{active_order.pk}")
    write = test_api_a.post(f"/api/v1/orders/{active_order.pk}/cancel", {"reason": "x"})

    assert read.status_code == write.status_code == 403
    assert error_of(read)["code"] == error_of(write)["code"] == "livemode_mismatch"
    assert CreditOrder.objects.get(pk=active_order.pk).status == before


def test_live_key_on_sandbox_data_is_403(api_a, sandbox_order):
    response = api_a.post(f"/api/v1/orders/{sandbox_order.pk}/cancel", {"reason": "x"})

    assert response.status_code == 403
    assert error_of(response)["code"] == "livemode_mismatch"
    assert CreditOrder.objects.get(pk=sandbox_order.pk).status == "active"


def test_live_key_cannot_order_for_a_sandbox_consumer(api_a, each_time_listing, sandbox_consumer):
    response = api_a.post(
        "/api/v1/orders",
        {"listing_id": each_time_listing.pk, "out_order_no": "X", "consumer_id": sandbox_consumer.pk},
    )

    assert response.status_code == 403
    assert error_of(response)["code"] == "livemode_mismatch"
    assert CreditOrder.objects.count() == 0


def test_test_key_must_name_a_sandbox_consumer(test_api_a, each_time_listing, live_consumer):
    without = test_api_a.post("/api/v1/orders", {"listing_id": each_time_listing.pk, "out_order_no": "T-1"})
    live = test_api_a.post(
        "/api/v1/orders", {"listing_id": each_time_listing.pk, "out_order_no": "T-2", "consumer_id": live_consumer.pk}
    )

    assert without.status_code == 400
    assert list(error_of(without)["fields"]) == ["consumer_id"]
    assert live.status_code == 403
    assert CreditOrder.objects.count() == 0


def test_live_key_cannot_name_a_stranger(api_a, each_time_listing, live_consumer):
    # A real consumer with no order or agreement at this merchant is not the merchant's to name.
    response = api_a.post(
        "/api/v1/orders", {"listing_id": each_time_listing.pk, "out_order_no": "X", "consumer_id": live_consumer.pk}
    )

    assert response.status_code == 404
    assert error_of(response)["fields"] == {"consumer_id": "No such consumer."}


def test_lists_show_only_the_keys_mode(api_a, test_api_a, active_order, sandbox_order):
    live_ids = [row["id"] for row in api_a.get("/api/v1/orders").json()["data"]]
    test_ids = [row["id"] for row in test_api_a.get("/api/v1/orders").json()["data"]]
    live_agreements = {row["consumer_id"] for row in api_a.get("/api/v1/agreements").json()["data"]}
    test_agreements = {row["consumer_id"] for row in test_api_a.get("/api/v1/agreements").json()["data"]}

    assert live_ids == [active_order.pk]
    assert test_ids == [sandbox_order.pk]
    assert live_agreements == {active_order.consumer_id}
    assert test_agreements == {sandbox_order.consumer_id}


def test_usage_batch_with_test_key_refuses_live_orders(test_api_a, active_order):
    response = test_api_a.post(
        "/api/v1/usage/batch",
        {
            "events": [
                {
                    "order_id": active_order.pk,
                    "merchant_event_id": "e",
                    "quantity": "1",
                    "occurred_at": "2026-11-25T20:00:00+08:00",
                }
            ]
        },
    )

    assert response.status_code == 403
    assert error_of(response)["code"] == "livemode_mismatch"


def test_listing_changes_need_a_live_key(test_api_a, each_time_listing):
    response = test_api_a.post(f"/api/v1/listings/{each_time_listing.pk}/pause", {})

    assert response.status_code == 403
    assert error_of(response)["code"] == "livemode_required"
    assert Listing.objects.get(pk=each_time_listing.pk).status == "active"
