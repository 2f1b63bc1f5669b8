"""Webhooks: outbox in the transaction of the change, Standard Webhooks signatures, retries, order, safety."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone
from standardwebhooks import Webhook, WebhookVerificationError

from bnpl.services import agreement_close, credit_order_cancel
from merchants.choices import WebhookDeliveryStatus
from merchants.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from merchants.services import (
    webhook_deliveries_run,
    webhook_delivery_redeliver,
    webhook_endpoint_create,
    webhook_endpoint_update,
    webhook_event_enqueue,
)
from merchants.webhooks import RETRY_DELAYS_S, decrypt_secret
from tests.api.receiver import Receiver


@pytest.fixture
def receiver(settings):
    settings.BNPL_WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def endpoint(merchant_a, receiver):
    endpoint, secret = webhook_endpoint_create(
        actor=None, merchant=merchant_a, url=receiver.url, event_types=["order.*"]
    )
    endpoint.test_secret = secret
    return endpoint


def test_secret_is_shown_once_and_stored_encrypted(endpoint):
    stored = WebhookEndpoint.objects.get(pk=endpoint.pk)

    assert endpoint.test_secret.startswith("whsec_")
    assert endpoint.test_secret not in stored.secret_encrypted
    assert decrypt_secret(stored.secret_encrypted) == endpoint.test_secret
    assert stored.secret_hint == f"whsec_…{endpoint.test_secret[-4:]}"


def test_order_transitions_are_queued_in_order(endpoint, api_a, active_order):
    api_a.post(f"/api/v1/orders/{active_order.pk}/cancel", {"reason": "user left"})

    events = list(WebhookEvent.objects.order_by("id"))
    assert [e.type for e in events] == ["order.active", "order.cancelled"]
    assert {e.ordering_key for e in events} == {f"order:{active_order.pk}"}
    payload = events[1].payload
    assert payload["id"] == active_order.pk
    assert payload["out_order_no"] == "A-ACTIVE-1"
    assert payload["status"] == "cancelled"
    assert payload["previous_status"] == "active"
    assert payload["reason"] == "user left"
    assert payload["max_amount"] == "20.00"
    assert payload["amount_due"] is None
    assert payload["closed_at"].endswith("+08:00")
    assert WebhookDelivery.objects.filter(endpoint=endpoint, status="pending").count() == 2


def test_agreement_events_are_queued(merchant_a, receiver, agreement_listing_a, live_consumer):
    from bnpl.services import agreement_sign

    webhook_endpoint_create(actor=None, merchant=merchant_a, url=receiver.url, event_types=["agreement.*"])

    agreement = agreement_sign(actor=None, consumer=live_consumer, listing=agreement_listing_a)
    agreement_close(actor=None, agreement=agreement, reason="done")

    assert list(WebhookEvent.objects.order_by("id").values_list("type", "ordering_key")) == [
        ("agreement.signed", f"agreement:{agreement.pk}"),
        ("agreement.closed", f"agreement:{agreement.pk}"),
    ]


def test_only_subscribed_types_of_the_same_mode_are_queued(merchant_a, receiver, api_a, active_order):
    webhook_endpoint_create(actor=None, merchant=merchant_a, url=receiver.url, event_types=["order.cancelled"])
    webhook_endpoint_create(actor=None, merchant=merchant_a, url=receiver.url, event_types=["*"], livemode=False)

    api_a.post(f"/api/v1/orders/{active_order.pk}/cancel", {"reason": "x"})

    assert list(WebhookEvent.objects.values_list("type", flat=True)) == ["order.cancelled"]
    assert WebhookDelivery.objects.count() == 1


def test_nothing_is_queued_or_delivered_for_rolled_back_work(endpoint, active_order, receiver):
    with pytest.raises(RuntimeError), transaction.atomic():
        # Not the durable service (it refuses to nest): the same _move inside a transaction that fails.
        from bnpl.services import _lock_order, _move

        order = _lock_order(active_order)
        _move(order, to="cancelled", actor=None, actor_kind="merchant", reason="rolled back")
        assert WebhookEvent.objects.filter(type="order.cancelled").count() == 1
        raise RuntimeError("the change fails after the event was written")

    assert WebhookEvent.objects.filter(type="order.cancelled").count() == 0
    webhook_deliveries_run()
    # Only the committed activation is sent; the rolled-back cancellation never existed.
    assert [json.loads(r.body)["type"] for r in receiver.received] == ["order.active"]


def test_refused_action_queues_nothing(endpoint, api_a, active_order):
    api_a.post(f"/api/v1/orders/{active_order.pk}/complete", {"lines": [{"name": "x", "amount": "99.00"}]})

    assert list(WebhookEvent.objects.values_list("type", flat=True)) == ["order.active"]


def test_delivery_is_signed_and_verifies_with_the_library(endpoint, api_a, active_order, receiver):
    api_a.post(f"/api/v1/orders/{active_order.pk}/cancel", {"reason": "x"})

    # One run sends order.active; order.cancelled of the same order waits for it, and goes next run.
    attempted = [webhook_deliveries_run(), webhook_deliveries_run(), webhook_deliveries_run()]

    assert attempted == [1, 1, 0]
    assert len(receiver.received) == 2
    first = receiver.received[0]
    verified = Webhook(endpoint.test_secret).verify(first.body, first.headers)
    assert verified["type"] == "order.active"
    assert verified["data"]["id"] == active_order.pk
    assert first.headers["webhook-id"] == WebhookEvent.objects.get(type="order.active").webhook_id
    assert first.headers["content-type"] == "application/json"
    deliveries = WebhookDelivery.objects.order_by("id")
    assert [d.status for d in deliveries] == ["succeeded", "succeeded"]
    assert all(d.delivered_at is not None and d.last_response_status == 200 for d in deliveries)


def test_tampered_body_and_stale_timestamp_are_refused(endpoint, api_a, active_order, receiver):
    webhook_deliveries_run()
    request = receiver.received[0]
    webhook = Webhook(endpoint.test_secret)

    with pytest.raises(WebhookVerificationError):
        webhook.verify(request.body.replace('"active"', '"paid"'), request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUJD" * 8).verify(request.body, request.headers)
    with time_machine.travel(timezone.now() + timedelta(minutes=6)), pytest.raises(WebhookVerificationError):
        webhook.verify(request.body, request.headers)
    assert webhook.verify(request.body, request.headers)["type"] == "order.active"


def test_failures_follow_the_retry_schedule_with_a_stable_id(endpoint, active_order, receiver):
    receiver.statuses = [500]
    delivery = WebhookDelivery.objects.get()
    start = timezone.now()
    seen_delays = []
    with time_machine.travel(start, tick=False) as clock:
        for attempt in range(1, len(RETRY_DELAYS_S) + 1):
            assert webhook_deliveries_run() == 1
            delivery.refresh_from_db()
            assert delivery.attempts == attempt
            if attempt < len(RETRY_DELAYS_S):
                delay = delivery.next_attempt_at - timezone.now()
                seen_delays.append(int(delay.total_seconds()))
                assert webhook_deliveries_run() == 0  # not due yet
                clock.shift(delay)

    assert seen_delays == list(RETRY_DELAYS_S[1:])  # 15 s, 15 s, 30 s, 3 min, 30 min ×4, 1 h
    assert delivery.status == WebhookDeliveryStatus.FAILED
    assert delivery.next_attempt_at is None
    assert delivery.last_response_status == 500
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 10
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    assert len(receiver.received) == 10


def test_a_later_event_of_an_order_waits_for_the_earlier_one(endpoint, api_a, active_order, receiver):
    api_a.post(f"/api/v1/orders/{active_order.pk}/cancel", {"reason": "x"})
    receiver.statuses = [500, 200, 200]

    webhook_deliveries_run()  # order.active fails; order.cancelled must not overtake it
    assert [json.loads(r.body)["type"] for r in receiver.received] == ["order.active"]
    with time_machine.travel(timezone.now() + timedelta(seconds=16)):
        webhook_deliveries_run()  # the retry of order.active succeeds …
        webhook_deliveries_run()  # … and only then order.cancelled goes

    assert [json.loads(r.body)["type"] for r in receiver.received] == [
        "order.active",
        "order.active",
        "order.cancelled",
    ]


def test_a_terminally_failed_event_no_longer_blocks_the_next(endpoint, api_a, active_order, receiver):
    api_a.post(f"/api/v1/orders/{active_order.pk}/cancel", {"reason": "x"})
    first = WebhookDelivery.objects.order_by("event_id").first()
    WebhookDelivery.objects.filter(pk=first.pk).update(status="failed", next_attempt_at=None)

    webhook_deliveries_run()

    assert [json.loads(r.body)["type"] for r in receiver.received] == ["order.cancelled"]


def test_manual_redelivery_resends_with_the_same_id(endpoint, active_order, receiver, staff_user):
    webhook_deliveries_run()
    delivery = WebhookDelivery.objects.get()

    webhook_delivery_redeliver(actor=staff_user, delivery=delivery)
    webhook_deliveries_run()

    delivery.refresh_from_db()
    assert delivery.status == "succeeded"
    assert delivery.redelivered_by == staff_user
    assert [r.headers["webhook-id"] for r in receiver.received] == [receiver.received[0].headers["webhook-id"]] * 2
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 2


def test_redelivery_of_a_pending_delivery_is_refused(endpoint, active_order):
    from bnpl.exceptions import InvalidTransition

    delivery = WebhookDelivery.objects.get()
    with pytest.raises(InvalidTransition):
        webhook_delivery_redeliver(actor=None, delivery=delivery)
    assert WebhookDelivery.objects.get().attempts == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "ftp://example.com/hook",
        "http://user:pw@8.8.8.8/hook",
    ],
)
def test_private_and_odd_targets_are_refused(merchant_a, settings, url):
    from bnpl.exceptions import ValidationFailed

    settings.BNPL_WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    with pytest.raises(ValidationFailed) as refused:
        webhook_endpoint_create(actor=None, merchant=merchant_a, url=url, event_types=["order.*"])
    assert "url" in refused.value.fields
    assert WebhookEndpoint.objects.count() == 0


def test_delivery_rechecks_the_target(endpoint, active_order, receiver, settings):
    settings.BNPL_WEBHOOK_ALLOW_PRIVATE_TARGETS = False  # e.g. the name now resolves to a private address

    webhook_deliveries_run()

    delivery = WebhookDelivery.objects.get()
    assert receiver.received == []
    assert delivery.status == "pending"
    assert delivery.last_error.startswith("refused: the address 127.0.0.1 is private")


def test_unknown_event_types_are_refused(merchant_a, receiver):
    from bnpl.exceptions import ValidationFailed

    with pytest.raises(ValidationFailed):
        webhook_endpoint_create(actor=None, merchant=merchant_a, url=receiver.url, event_types=["orders.*"])
    endpoint, _secret = webhook_endpoint_create(
        actor=None, merchant=merchant_a, url=receiver.url, event_types=["order.completed", "refund.*"]
    )
    updated = webhook_endpoint_update(actor=None, endpoint=endpoint, is_active=False)
    assert updated.event_types == ["order.completed", "refund.*"]
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).is_active is False


def test_inactive_endpoint_gets_nothing(endpoint, api_a, active_order):
    WebhookDelivery.objects.all().delete()
    webhook_endpoint_update(actor=None, endpoint=endpoint, is_active=False)

    credit_order_cancel(actor=None, actor_kind="merchant", order=active_order, reason="x")

    assert WebhookDelivery.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_two_workers_sweeping_at_once_send_each_delivery_once(settings):
    from tests.bnpl.helpers import run_concurrently
    from tests.factories import MerchantFactory

    settings.BNPL_WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    receiver = Receiver().start()
    try:
        merchant = MerchantFactory()
        webhook_endpoint_create(actor=None, merchant=merchant, url=receiver.url, event_types=["order.*"])
        for n in range(30):
            # Thirty different orders: no ordering constraint between them, so both workers find work.
            with transaction.atomic():
                webhook_event_enqueue(
                    merchant_id=merchant.pk, event_type="order.paid", payload={"n": n}, ordering_key=f"order:{n}"
                )

        results = run_concurrently(lambda: webhook_deliveries_run(limit=5), lambda: webhook_deliveries_run(limit=5))
        while webhook_deliveries_run(limit=5):
            pass
    finally:
        receiver.stop()

    assert all(isinstance(r, int) for r in results), results
    sent = sorted(json.loads(r.body)["data"]["n"] for r in receiver.received)
    assert sent == list(range(30))
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"succeeded"}
    assert WebhookAttempt.objects.count() == 30
