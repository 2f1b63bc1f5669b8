"""Cancelling, expiring, and settling an order paid through another channel."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from bnpl import services, tasks
from bnpl.choices import ActorKind, OrderStatus
from bnpl.exceptions import NotAllowed, ValidationFailed
from bnpl.models import CreditOrder, OrderEvent
from consumers.models import PromiseRecord
from consumers.services import promise_record_add
from tests.bnpl.helpers import exposure, order_in, snapshot

S = OrderStatus
pytestmark = pytest.mark.django_db


# --------------------------------------------------------------------------- cancel


def test_cancel_active_releases_the_hold_and_records_cancelled(listing, consumer):
    order = order_in(S.ACTIVE, listing=listing, consumer=consumer)
    assert exposure(consumer) == Decimal("20.00")

    services.credit_order_cancel(actor=consumer.user, actor_kind=ActorKind.CONSUMER, order=order, reason="不需要了")

    order.refresh_from_db()
    assert (order.status, order.hold_amount, order.close_reason) == (S.CANCELLED, Decimal("0.00"), "不需要了")
    assert order.closed_at is not None
    assert exposure(consumer) == Decimal("0.00")
    promise = PromiseRecord.objects.get(order_id=order.pk)
    assert (promise.outcome, promise.amount, promise.consumer, promise.merchant_id) == (
        "cancelled",
        Decimal("0.00"),
        consumer,
        order.merchant_id,
    )
    event = OrderEvent.objects.get(order=order)
    assert (event.actor, event.actor_kind, event.reason) == (consumer.user, ActorKind.CONSUMER, "不需要了")


def test_cancel_pending_leaves_no_promise_record_and_spends_the_token(listing, consumer, merchant_user):
    order = order_in(S.PENDING_CONFIRMATION, listing=listing, consumer=consumer)
    services.credit_order_cancel(actor=merchant_user, actor_kind=ActorKind.MERCHANT, order=order, reason="下错单")
    order.refresh_from_db()
    assert (order.status, order.confirmation_token) == (S.CANCELLED, None)
    assert PromiseRecord.objects.count() == 0
    assert exposure(consumer) == Decimal("0.00")


@pytest.mark.parametrize("reason", ["", "   "])
def test_cancel_needs_a_reason(listing, consumer, merchant_user, reason):
    order = order_in(S.ACTIVE, listing=listing, consumer=consumer)
    before = snapshot(order)
    with pytest.raises(ValidationFailed) as refused:
        services.credit_order_cancel(actor=merchant_user, actor_kind=ActorKind.MERCHANT, order=order, reason=reason)
    assert list(refused.value.fields) == ["reason"]
    assert snapshot(order) == before


# --------------------------------------------------------------------------- expire


def test_expire_refuses_an_order_still_within_its_deadline(listing):
    order = order_in(S.PENDING_CONFIRMATION, listing=listing)
    before = snapshot(order)
    with pytest.raises(NotAllowed) as refused:
        services.credit_order_expire(order=order)
    assert refused.value.code == "not_expired"
    assert snapshot(order) == before


def test_expire_task_expires_only_orders_past_their_deadline(listing):
    late = [order_in(S.PENDING_CONFIRMATION, listing=listing, expires_in=timedelta(minutes=-m)) for m in (1, 60)]
    on_time = order_in(S.PENDING_CONFIRMATION, listing=listing, expires_in=timedelta(minutes=5))
    active = order_in(S.ACTIVE, listing=listing, consumer=None, hold_amount=Decimal("0.00"))

    assert tasks.expire_pending_orders() == 2
    assert tasks.expire_pending_orders() == 0  # a second (or duplicated) run finds nothing

    statuses = dict(CreditOrder.objects.values_list("pk", "status"))
    assert statuses == {
        late[0].pk: S.EXPIRED,
        late[1].pk: S.EXPIRED,
        on_time.pk: S.PENDING_CONFIRMATION,
        active.pk: S.ACTIVE,
    }
    for order in late:
        event = OrderEvent.objects.get(order=order)
        assert (event.from_status, event.to_status, event.actor, event.actor_kind) == (
            S.PENDING_CONFIRMATION,
            S.EXPIRED,
            None,
            ActorKind.SYSTEM,
        )
        order.refresh_from_db()
        assert order.confirmation_token is None
    assert OrderEvent.objects.count() == 2


def test_expire_task_respects_its_limit_and_chunks(listing, monkeypatch):
    monkeypatch.setattr(tasks, "EXPIRY_CHUNK", 2)
    for _ in range(5):
        order_in(S.PENDING_CONFIRMATION, listing=listing, expires_in=timedelta(minutes=-1))
    assert tasks.expire_pending_orders(limit=3) == 3
    assert tasks.expire_pending_orders(limit=3) == 2
    assert CreditOrder.objects.filter(status=S.EXPIRED).count() == 5
    assert OrderEvent.objects.filter(to_status=S.EXPIRED).count() == 5


# --------------------------------------------------------------------------- paid elsewhere


@pytest.mark.parametrize("status", [S.COMPLETED, S.COLLECTING, S.OVERDUE])
def test_mark_paid_elsewhere_releases_the_hold_and_records_fulfilled(listing, consumer, merchant_user, status):
    order = order_in(status, listing=listing, consumer=consumer)
    assert exposure(consumer) == Decimal("5.00")

    services.credit_order_mark_paid_elsewhere(
        actor=merchant_user, actor_kind=ActorKind.MERCHANT, order=order, reason="门店现金支付"
    )

    order.refresh_from_db()
    assert (order.status, order.hold_amount, order.amount_due) == (S.PAID, Decimal("0.00"), Decimal("5.00"))
    assert exposure(consumer) == Decimal("0.00")
    promise = PromiseRecord.objects.get(order_id=order.pk)
    assert (promise.outcome, promise.amount) == ("fulfilled", Decimal("5.00"))
    event = OrderEvent.objects.get(order=order)
    assert (event.from_status, event.to_status, event.actor, event.actor_kind, event.reason) == (
        status,
        S.PAID,
        merchant_user,
        ActorKind.MERCHANT,
        "门店现金支付",
    )


def test_mark_paid_elsewhere_after_a_breach_records_recovered(listing, consumer, staff_user):
    order = order_in(S.OVERDUE, listing=listing, consumer=consumer)
    promise_record_add(
        consumer=consumer,
        merchant_id=order.merchant_id,
        order_id=order.pk,
        outcome="breached",
        amount=Decimal("5.00"),
        recorded_at=timezone.now(),
    )
    services.credit_order_mark_paid_elsewhere(
        actor=staff_user, actor_kind=ActorKind.STAFF, order=order, reason="bank transfer received"
    )
    assert list(PromiseRecord.objects.filter(order_id=order.pk).values_list("outcome", flat=True)) == ["recovered"]
    assert exposure(consumer) == Decimal("0.00")


def test_mark_paid_elsewhere_needs_a_reason(listing, consumer, merchant_user):
    order = order_in(S.COMPLETED, listing=listing, consumer=consumer)
    before = snapshot(order)
    with pytest.raises(ValidationFailed):
        services.credit_order_mark_paid_elsewhere(
            actor=merchant_user, actor_kind=ActorKind.MERCHANT, order=order, reason=""
        )
    assert snapshot(order) == before
