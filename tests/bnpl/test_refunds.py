"""Merchant actions: refunds after the charge, lowering the amount before it, one more collection attempt."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from bnpl.charging import run_charges
from bnpl.choices import ActorKind, OrderStatus
from bnpl.exceptions import InvalidTransition, NotAllowed, ValidationFailed
from bnpl.gateway.services import sandbox_faults_set
from bnpl.ledger import ledger_check, order_account_balance
from bnpl.models import ChargeAttempt, CreditOrder, OrderEvent, Refund, SandboxRefund
from bnpl.models.ledger import AccountKind
from bnpl.models.settlement import RefundStatus
from bnpl.refunds import credit_order_collect, credit_order_lower_amount, credit_order_refund, reconcile_pending_refunds
from bnpl.services import credit_order_mark_paid_elsewhere
from consumers.models import PromiseRecord
from tests.bnpl.charging_helpers import due_order, fund
from tests.bnpl.helpers import exposure, snapshot
from tests.bnpl.partb_helpers import charged_order, ledger_keys
from tests.factories import ListingFactory

S = OrderStatus
D = Decimal
pytestmark = pytest.mark.django_db


@pytest.fixture
def listing(merchant):
    return ListingFactory(merchant=merchant, max_amount=D("500.00"))


def refund(order, amount, key="r1", reason="returned goods", **kw):
    return credit_order_refund(
        actor=None, actor_kind=ActorKind.MERCHANT, order=order, amount=amount, reason=reason, idempotency_key=key, **kw
    )


def test_refund_above_charged_is_refused_and_nothing_posted(listing, consumer):
    order = charged_order(listing, consumer, amount="100.00")
    before, keys = snapshot(order), ledger_keys(order)
    with pytest.raises(ValidationFailed) as exc:
        refund(order, "100.01")
    assert exc.value.code == "refund_exceeds_charged"
    assert snapshot(order) == before
    assert ledger_keys(order) == keys
    assert Refund.objects.count() == 0
    assert SandboxRefund.objects.count() == 0


def test_refund_on_unpaid_order_is_refused(listing, consumer):
    fund(consumer)
    order = due_order(listing, consumer, amount="20.00")
    before, keys = snapshot(order), ledger_keys(order)
    with pytest.raises(InvalidTransition, match="completed"):
        refund(order, "5.00")
    assert snapshot(order) == before
    assert ledger_keys(order) == keys
    assert Refund.objects.count() == 0


def test_refund_requires_a_reason(listing, consumer):
    order = charged_order(listing, consumer)
    with pytest.raises(ValidationFailed) as exc:
        refund(order, "1.00", reason="  ")
    assert "reason" in exc.value.fields
    assert Refund.objects.count() == 0


def test_partial_then_full_refund(listing, consumer):
    order = charged_order(listing, consumer, amount="100.00")
    source = consumer.sandbox_sources.get()
    balance_after_charge = source.balance_amount

    first = refund(order, "30.00", key="a")
    assert first.status == RefundStatus.SUCCEEDED
    order.refresh_from_db()
    assert order.status == S.PARTIALLY_REFUNDED
    assert order.refunded_amount == D("30.00")

    second = refund(order, "70.00", key="b")
    assert second.status == RefundStatus.SUCCEEDED
    order.refresh_from_db()
    assert order.status == S.REFUNDED
    assert order.refunded_amount == D("100.00")

    source.refresh_from_db()
    assert source.balance_amount == balance_after_charge + D("100.00")
    # Merchant bore 100 of refunds; the fee (0.60) is kept by the platform.
    assert order_account_balance(order, AccountKind.MERCHANT_PAYABLE) == D("0.60")
    assert order_account_balance(order, AccountKind.PAYMENT_CLEARING) == D("0.00")
    assert order_account_balance(order, AccountKind.CONSUMER_RECEIVABLE) == D("0.00")
    assert list(OrderEvent.objects.filter(order=order, to_status=S.REFUNDED).values_list("from_status", flat=True)) == [
        S.PARTIALLY_REFUNDED
    ]
    with pytest.raises(InvalidTransition):
        refund(order, "0.01", key="c")
    assert ledger_check() == []


def test_refund_replay_with_same_key_has_one_effect(listing, consumer):
    order = charged_order(listing, consumer, amount="50.00")
    first = refund(order, "10.00", key="same")
    again = refund(order, "10.00", key="same")
    assert again.pk == first.pk
    assert Refund.objects.count() == 1
    assert SandboxRefund.objects.count() == 1
    order.refresh_from_db()
    assert order.refunded_amount == D("10.00")
    with pytest.raises(ValidationFailed) as exc:
        refund(order, "11.00", key="same")
    assert exc.value.code == "idempotency_conflict"


def test_refund_of_order_paid_elsewhere_is_refused(listing, consumer):
    order = due_order(listing, consumer, amount="20.00")
    credit_order_mark_paid_elsewhere(actor=None, actor_kind=ActorKind.MERCHANT, order=order, reason="cash")
    with pytest.raises(NotAllowed) as exc:
        refund(order, "5.00")
    assert exc.value.code == "not_charged"
    assert Refund.objects.count() == 0


def test_refund_with_unknown_outcome_is_reconciled_once(listing, consumer):
    order = charged_order(listing, consumer, amount="40.00")
    sandbox_faults_set(actor=None, lost_response_rate="1")
    pending = refund(order, "15.00")
    assert pending.status == RefundStatus.UNKNOWN
    order.refresh_from_db()
    assert (order.status, order.refunded_amount) == (S.PAID, D("0.00"))
    assert SandboxRefund.objects.count() == 1  # the provider did refund; only the answer was lost
    # While one is in flight, another refund is refused (it could not be checked against the limit).
    with pytest.raises(NotAllowed) as exc:
        refund(order, "1.00", key="other")
    assert exc.value.code == "refund_in_progress"

    sandbox_faults_set(actor=None)
    assert reconcile_pending_refunds(older_than=timedelta(0)) == {
        "checked": 1,
        "succeeded": 1,
        "declined": 0,
        "unknown": 0,
    }
    pending.refresh_from_db()
    order.refresh_from_db()
    assert pending.status == RefundStatus.SUCCEEDED
    assert (order.status, order.refunded_amount) == (S.PARTIALLY_REFUNDED, D("15.00"))
    assert SandboxRefund.objects.count() == 1
    assert reconcile_pending_refunds(older_than=timedelta(0))["checked"] == 0
    assert ledger_keys(order).count(f"refund:{pending.gateway_key}") == 1
    assert ledger_check() == []


def test_refund_never_sent_is_sent_again_with_its_key(listing, consumer):
    order = charged_order(listing, consumer, amount="40.00")
    sandbox_faults_set(actor=None, timeout_rate="1")
    lost = refund(order, "40.00")
    assert lost.status == RefundStatus.UNKNOWN
    assert SandboxRefund.objects.count() == 0
    sandbox_faults_set(actor=None)
    reconcile_pending_refunds(older_than=timedelta(0))
    lost.refresh_from_db()
    order.refresh_from_db()
    assert lost.status == RefundStatus.SUCCEEDED
    assert order.status == S.REFUNDED
    assert list(SandboxRefund.objects.values_list("idempotency_key", flat=True)) == [lost.gateway_key]


# --------------------------------------------------------------------------- lowering the amount


def test_lower_amount_before_charge_posts_reduction_and_shrinks_hold(listing, consumer):
    fund(consumer)
    order = due_order(listing, consumer, amount="80.00")
    held = exposure(consumer)
    credit_order_lower_amount(
        actor=None, actor_kind=ActorKind.MERCHANT, order=order, new_amount="60.00", reason="discount agreed"
    )
    order.refresh_from_db()
    assert (order.status, order.amount_due, order.hold_amount) == (S.COMPLETED, D("60.00"), D("60.00"))
    assert exposure(consumer) == held - D("20.00")
    assert order_account_balance(order, AccountKind.CONSUMER_RECEIVABLE) == D("60.00")
    assert order_account_balance(order, AccountKind.MERCHANT_PAYABLE) == D("-60.00")
    run_charges(threads=1)
    attempt = ChargeAttempt.objects.get(order=order)
    assert attempt.amount == D("60.00")
    assert ledger_check() == []


def test_lower_amount_only_downward(listing, consumer):
    order = due_order(listing, consumer, amount="80.00")
    before, keys = snapshot(order), ledger_keys(order)
    for new in ("80.00", "90.00"):
        with pytest.raises(ValidationFailed) as exc:
            credit_order_lower_amount(
                actor=None, actor_kind=ActorKind.MERCHANT, order=order, new_amount=new, reason="x"
            )
        assert exc.value.code == "amount_not_lower"
    assert snapshot(order) == before
    assert ledger_keys(order) == keys


def test_lower_amount_after_charge_is_refused(listing, consumer):
    order = charged_order(listing, consumer, amount="80.00")
    before, keys = snapshot(order), ledger_keys(order)
    with pytest.raises(InvalidTransition, match="paid"):
        credit_order_lower_amount(actor=None, actor_kind=ActorKind.MERCHANT, order=order, new_amount="1", reason="x")
    assert snapshot(order) == before
    assert ledger_keys(order) == keys


def test_lower_amount_while_charge_in_flight_is_refused(listing, consumer):
    fund(consumer)
    order = due_order(listing, consumer, amount="80.00")
    sandbox_faults_set(actor=None, timeout_rate="1")
    run_charges(threads=1)
    before = snapshot(order)
    assert before["order"]["charge_in_flight"] is True
    with pytest.raises(NotAllowed) as exc:
        credit_order_lower_amount(actor=None, actor_kind=ActorKind.MERCHANT, order=order, new_amount="1", reason="x")
    assert exc.value.code == "charge_in_progress"
    assert snapshot(order) == before


def test_lower_amount_to_zero_closes_the_order_as_paid(listing, consumer):
    order = due_order(listing, consumer, amount="30.00")
    credit_order_lower_amount(actor=None, actor_kind=ActorKind.MERCHANT, order=order, new_amount="0", reason="free")
    order.refresh_from_db()
    assert (order.status, order.amount_due, order.hold_amount) == (S.PAID, D("0.00"), D("0.00"))
    assert exposure(consumer) == D("0.00")
    assert PromiseRecord.objects.get(order_id=order.pk).outcome == "fulfilled"
    assert order_account_balance(order, AccountKind.CONSUMER_RECEIVABLE) == D("0.00")
    assert ledger_check() == []


def test_mark_paid_elsewhere_after_lowering_reverses_exactly_the_rest(listing, consumer):
    order = due_order(listing, consumer, amount="30.00")
    credit_order_lower_amount(actor=None, actor_kind=ActorKind.MERCHANT, order=order, new_amount="25", reason="x")
    credit_order_mark_paid_elsewhere(actor=None, actor_kind=ActorKind.MERCHANT, order=order, reason="cash")
    assert order_account_balance(order, AccountKind.CONSUMER_RECEIVABLE) == D("0.00")
    assert order_account_balance(order, AccountKind.MERCHANT_PAYABLE) == D("0.00")
    assert ledger_check() == []


# --------------------------------------------------------------------------- collect


def test_collect_schedules_exactly_one_attempt(listing, consumer):
    fund(consumer, "10.00")
    later = timezone.now() + timedelta(hours=5)
    order = due_order(listing, consumer, amount="20.00", status=S.COLLECTING, next_attempt_at=later)
    run_charges(threads=1)
    assert ChargeAttempt.objects.filter(order=order).count() == 0  # not due yet
    credit_order_collect(actor=None, actor_kind=ActorKind.MERCHANT, order=order)
    with pytest.raises(NotAllowed) as exc:
        credit_order_collect(actor=None, actor_kind=ActorKind.MERCHANT, order=order)
    assert exc.value.code == "collection_already_due"
    run_charges(threads=1)
    run_charges(threads=1)
    attempts = list(ChargeAttempt.objects.filter(order=order))
    assert len(attempts) == 1
    assert attempts[0].status == "declined"  # balance 10 < 20
    event = OrderEvent.objects.filter(order=order, data__event="collect_requested").get()
    assert event.actor_kind == ActorKind.MERCHANT


def test_collect_refused_for_completed_order(listing, consumer):
    order = due_order(listing, consumer, amount="20.00")
    before = snapshot(order)
    with pytest.raises(InvalidTransition):
        credit_order_collect(actor=None, actor_kind=ActorKind.MERCHANT, order=order)
    assert snapshot(order) == before
    assert CreditOrder.objects.get(pk=order.pk).next_attempt_at is None
