"""Idempotency-Key: one effect per key (invariant 6), replay, 422 on reuse, 409 while running, retention."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from bnpl.api import views
from bnpl.models import CreditOrder, UsageEvent
from merchants.choices import IdempotencyStatus
from merchants.models import IdempotencyRecord
from merchants.services import IDEMPOTENCY_LEASE, idempotency_records_purge
from merchants.tasks import purge_idempotency_records
from tests.api.conftest import error_of, make_api
from tests.bnpl.helpers import run_concurrently
from tests.factories import ListingFactory, MerchantFactory


def test_same_key_and_body_replays_the_stored_response(api_a, each_time_listing):
    body = {"listing_id": each_time_listing.pk, "out_order_no": "I-1"}

    first = api_a.post("/api/v1/orders", body, key="key-1")
    second = api_a.post("/api/v1/orders", body, key="key-1")

    assert first.status_code == second.status_code == 201
    assert second.content == first.content
    assert second["Idempotent-Replayed"] == "true"
    assert not first.has_header("Idempotent-Replayed")
    assert CreditOrder.objects.count() == 1
    record = IdempotencyRecord.objects.get(key="key-1")
    assert (record.status, record.response_status) == (IdempotencyStatus.COMPLETED, 201)


def test_refusals_are_stored_and_replayed_too(api_a, each_time_listing):
    body = {"listing_id": each_time_listing.pk, "out_order_no": "I-1", "max_amount": "999.00"}

    first = api_a.post("/api/v1/orders", body, key="key-1")
    each_time_listing.max_amount = "1000.00"
    each_time_listing.save()
    second = api_a.post("/api/v1/orders", body, key="key-1")

    assert first.status_code == second.status_code == 400
    assert error_of(second)["code"] == "amount_exceeds_cap"
    assert CreditOrder.objects.count() == 0


def test_same_key_with_another_body_is_422(api_a, each_time_listing):
    api_a.post("/api/v1/orders", {"listing_id": each_time_listing.pk, "out_order_no": "I-1"}, key="key-1")

    response = api_a.post("/api/v1/orders", {"listing_id": each_time_listing.pk, "out_order_no": "I-2"}, key="key-1")

    assert response.status_code == 422
    assert error_of(response)["code"] == "idempotency_key_reused"
    assert list(CreditOrder.objects.values_list("out_order_no", flat=True)) == ["I-1"]


def test_same_key_on_another_path_is_422(api_a, active_order):
    api_a.post(f"/api/v1/orders/{active_order.pk}/cancel", {"reason": "x"}, key="key-1")

    response = api_a.post(f"/api/v1/orders/{active_order.pk}/sync", {"reason": "x"}, key="key-1")

    assert response.status_code == 422


def test_keys_are_per_merchant(api_a, each_time_listing, merchant_b, api_b):
    listing_b = ListingFactory(merchant=merchant_b)

    a = api_a.post("/api/v1/orders", {"listing_id": each_time_listing.pk, "out_order_no": "SAME"}, key="shared")
    b = api_b.post("/api/v1/orders", {"listing_id": listing_b.pk, "out_order_no": "SAME"}, key="shared")

    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]
    assert CreditOrder.objects.count() == 2
    assert IdempotencyRecord.objects.filter(key="shared").count() == 2


def test_batch_effect_and_stored_response_share_one_transaction(api_a, active_order, monkeypatch):
    # The response is stored inside the transaction of the usage insert: if storing fails, the
    # events roll back with it, so there is never an effect without its replayable response.
    def explode(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("bnpl.api.idempotency.idempotency_complete", explode)
    event = {"order_id": active_order.pk, "merchant_event_id": "e", "quantity": "1"}
    event["occurred_at"] = "2026-11-25T20:00:00+08:00"

    with pytest.raises(RuntimeError):
        api_a.post("/api/v1/usage/batch", {"events": [event]}, key="key-1")

    assert UsageEvent.objects.count() == 0
    assert not IdempotencyRecord.objects.filter(key="key-1").exists()  # released: a retry runs again


def test_an_unexpected_error_releases_the_key(api_a, each_time_listing, monkeypatch):
    def crash(**kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(views, "credit_order_create", crash)
    body = {"listing_id": each_time_listing.pk, "out_order_no": "I-1"}
    with pytest.raises(RuntimeError):
        api_a.post("/api/v1/orders", body, key="key-1")
    monkeypatch.undo()

    retry = api_a.post("/api/v1/orders", body, key="key-1")

    assert retry.status_code == 201
    assert CreditOrder.objects.count() == 1


def test_an_abandoned_claim_is_taken_over_after_its_lease(api_a, each_time_listing):
    # A process that died mid-request leaves its claim in progress: 409 until the lease ends, then a retry runs.
    body = {"listing_id": each_time_listing.pk, "out_order_no": "I-1"}
    api_a.post("/api/v1/orders", body, key="key-1")
    IdempotencyRecord.objects.filter(key="key-1").update(
        status=IdempotencyStatus.IN_PROGRESS, response_status=None, locked_until=timezone.now() + IDEMPOTENCY_LEASE
    )
    CreditOrder.objects.all().delete()  # the effect died with the process

    blocked = api_a.post("/api/v1/orders", body, key="key-1")
    with time_machine.travel(timezone.now() + IDEMPOTENCY_LEASE + timedelta(seconds=1)):
        retried = api_a.post("/api/v1/orders", body, key="key-1")

    assert blocked.status_code == 409
    assert error_of(blocked)["code"] == "idempotency_in_progress"
    assert retried.status_code == 201
    assert CreditOrder.objects.count() == 1


def test_purge_keeps_a_day_and_removes_after_48_hours(api_a, each_time_listing):
    for n in range(3):
        api_a.post("/api/v1/orders", {"listing_id": each_time_listing.pk, "out_order_no": f"P-{n}"}, key=f"k{n}")
    now = timezone.now()
    IdempotencyRecord.objects.filter(key="k0").update(created_at=now - timedelta(hours=49))
    IdempotencyRecord.objects.filter(key="k1").update(created_at=now - timedelta(hours=25))

    deleted = purge_idempotency_records(older_than_hours=48)

    assert deleted == 1
    assert sorted(IdempotencyRecord.objects.values_list("key", flat=True)) == ["k1", "k2"]
    with pytest.raises(ValueError):
        idempotency_records_purge(older_than=timedelta(hours=23))


@pytest.mark.django_db(transaction=True)
def test_concurrent_request_with_the_same_key_gets_409(monkeypatch):
    merchant = MerchantFactory()
    listing = ListingFactory(merchant=merchant)
    api = make_api(merchant)
    started, release = threading.Event(), threading.Event()
    real_create = views.credit_order_create

    def slow_create(**kwargs):
        started.set()
        assert release.wait(10)
        return real_create(**kwargs)

    monkeypatch.setattr(views, "credit_order_create", slow_create)
    body = {"listing_id": listing.pk, "out_order_no": "C-1"}

    def first():
        return api.post("/api/v1/orders", body, key="same")

    def second():
        assert started.wait(10)
        try:
            return api.post("/api/v1/orders", body, key="same")
        finally:
            release.set()

    results = run_concurrently(first, second)

    assert [r.status_code for r in results] == [201, 409]
    assert error_of(results[1])["code"] == "idempotency_in_progress"
    replay = api.post("/api/v1/orders", body, key="same")
    assert replay.status_code == 201
    assert replay.content == results[0].content
    assert CreditOrder.objects.filter(merchant=merchant).count() == 1
    connection.close()


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_with_the_same_key_have_one_effect():
    from bnpl.services import agreement_sign
    from merchants.choices import ConfirmMode
    from tests.factories import ConsumerFactory

    merchant = MerchantFactory()
    listing = ListingFactory(merchant=merchant, confirm_mode=ConfirmMode.AGREEMENT)
    consumer = ConsumerFactory()
    agreement_sign(actor=None, consumer=consumer, listing=listing)
    api = make_api(merchant)
    order = api.post("/api/v1/orders", {"listing_id": listing.pk, "out_order_no": "O", "consumer_id": consumer.pk})
    events = [
        {
            "order_id": order.json()["id"],
            "merchant_event_id": f"e{i}",
            "quantity": "1",
            "occurred_at": "2026-11-25T20:00:00+08:00",
        }
        for i in range(200)
    ]

    results = run_concurrently(
        *[lambda: api.post("/api/v1/usage/batch", {"events": events}, key="b") for _ in range(4)]
    )

    statuses = sorted(r.status_code for r in results)
    assert statuses.count(200) >= 1
    assert set(statuses) <= {200, 409}
    assert UsageEvent.objects.count() == 200
    created = [r.json()["created"] for r in results if r.status_code == 200]
    assert set(created) == {200}  # a replay carries the first response, never a second effect
