"""Webhook events of refunds, disputes and settlements: one outbox row per change, in its transaction."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from bnpl import disputes as disputes_module
from bnpl import refunds as refunds_module
from bnpl import settlement as settlement_module
from bnpl.choices import ActorKind
from bnpl.disputes import dispute_decide, dispute_open, dispute_respond, dispute_withdraw
from bnpl.gateway.base import ChargeOutcome, DeclineCode, GatewayResult, PaymentGateway
from bnpl.gateway.faults import NO_FAULTS, SandboxFaults
from bnpl.gateway.sandbox import InProcessSandboxGateway
from bnpl.models import Dispute, LedgerTransaction, Payout, Refund, SettlementBatch
from bnpl.models.settlement import DisputeOutcome, PayoutStatus
from bnpl.refunds import credit_order_refund, reconcile_pending_refunds
from bnpl.settlement import payouts_send_due, settle_merchants
from merchants.models import WebhookDelivery, WebhookEvent
from merchants.services import webhook_endpoint_create
from tests.bnpl.partb_helpers import charged_order
from tests.factories import ConsumerFactory, ListingFactory

D = Decimal
CLEAN = InProcessSandboxGateway(faults=NO_FAULTS)


@pytest.fixture(autouse=True)
def _private_targets(settings):
    settings.BNPL_WEBHOOK_ALLOW_PRIVATE_TARGETS = True


@pytest.fixture
def listing(merchant):
    return ListingFactory(merchant=merchant, max_amount=D("500.00"))


def subscribe(merchant, *types: str):
    endpoint, _secret = webhook_endpoint_create(
        actor=None, merchant=merchant, url="http://127.0.0.1:9/hooks", event_types=list(types)
    )
    return endpoint


def events(family: str) -> list[WebhookEvent]:
    return list(WebhookEvent.objects.filter(type__startswith=f"{family}.").order_by("id"))


def only(event_type: str) -> dict[str, Any]:
    [event] = WebhookEvent.objects.filter(type=event_type)
    return event.payload


def refund(order, amount: str, key: str = "r1", gateway: PaymentGateway | None = None) -> Refund:
    return credit_order_refund(
        actor=None,
        actor_kind=ActorKind.MERCHANT,
        order=order,
        amount=amount,
        reason="returned goods",
        idempotency_key=key,
        gateway=gateway or CLEAN,
    )


class DecliningGateway(PaymentGateway):
    """A provider that refuses every refund (the sandbox only declines refunds of unknown charges)."""

    def charge(self, idempotency_key, funding_source, amount):  # pragma: no cover - not called
        raise AssertionError

    def refund(self, idempotency_key, charge_ref, amount):
        return GatewayResult(outcome=ChargeOutcome.DECLINED, decline_code=DeclineCode.CHARGE_NOT_FOUND, message="no")

    def query(self, idempotency_key):  # pragma: no cover - not called
        raise AssertionError

    def payout(self, idempotency_key, account, amount):  # pragma: no cover - not called
        raise AssertionError


# --------------------------------------------------------------------------- refunds


@pytest.mark.django_db
def test_refund_succeeded_is_enqueued_once_with_the_order_and_amounts(merchant, listing):
    endpoint = subscribe(merchant, "refund.*")
    order = charged_order(listing, ConsumerFactory(), amount="100.00")

    made = refund(order, "40.00", key="RF-1")

    [event] = events("refund")
    assert event.type == "refund.succeeded"
    assert event.ordering_key == f"order:{order.pk}"
    assert event.livemode is True
    payload = event.payload
    assert payload["object"] == "refund"
    assert (payload["id"], payload["order_id"], payload["out_order_no"]) == (made.pk, order.pk, order.out_order_no)
    assert payload["out_refund_no"] == "RF-1"
    assert (payload["amount"], payload["order_amount_due"], payload["order_refunded_amount"]) == (
        "40.00",
        "100.00",
        "40.00",
    )
    assert payload["status"] == "succeeded" and payload["decline_code"] == ""
    assert payload["finished_at"].endswith("+08:00") and payload["requested_at"].endswith("+08:00")
    assert WebhookDelivery.objects.filter(event=event, endpoint=endpoint).count() == 1
    # A replay of the same refund key sends nothing more.
    refund(order, "40.00", key="RF-1")
    assert len(events("refund")) == 1


@pytest.mark.django_db
def test_refund_declined_is_enqueued(merchant, listing):
    subscribe(merchant, "refund.declined")
    order = charged_order(listing, ConsumerFactory(), amount="30.00")

    refund(order, "10.00", gateway=DecliningGateway())

    payload = only("refund.declined")
    assert payload["status"] == "declined" and payload["decline_code"] == "charge_not_found"
    assert payload["order_refunded_amount"] == "0.00"
    assert [e.type for e in WebhookEvent.objects.all()] == ["refund.declined"]


@pytest.mark.django_db
def test_unknown_refund_is_announced_only_when_reconciled(merchant, listing):
    subscribe(merchant, "refund.*")
    order = charged_order(listing, ConsumerFactory(), amount="30.00")
    lost = InProcessSandboxGateway(faults=SandboxFaults(lost_response_rate=D(1)))

    assert refund(order, "10.00", gateway=lost).status == "unknown"
    assert events("refund") == []

    reconcile_pending_refunds(older_than=timedelta(0), gateway=CLEAN)
    reconcile_pending_refunds(older_than=timedelta(0), gateway=CLEAN)

    assert [e.type for e in events("refund")] == ["refund.succeeded"]


# --------------------------------------------------------------------------- disputes


@pytest.mark.django_db
def test_dispute_lifecycle_events_then_the_refund(merchant, listing):
    subscribe(merchant, "dispute.*", "refund.*")
    consumer = ConsumerFactory()
    order = charged_order(listing, consumer, amount="60.00")

    dispute = dispute_open(
        actor=None, consumer=consumer, order=order, reason="faulty", description="broken screen", amount="25.00"
    )
    dispute_respond(actor=None, dispute=dispute, text="we will check", merchant_id=merchant.pk)
    dispute_decide(
        actor=None, dispute=dispute, outcome=DisputeOutcome.CONSUMER_WON, reason="photos show damage", gateway=CLEAN
    )

    types = list(WebhookEvent.objects.order_by("id").values_list("type", "ordering_key"))
    assert types == [
        ("dispute.opened", f"order:{order.pk}"),
        ("dispute.responded", f"order:{order.pk}"),
        ("dispute.decided", f"order:{order.pk}"),
        ("refund.succeeded", f"order:{order.pk}"),
    ]
    opened = only("dispute.opened")
    assert opened["object"] == "dispute" and opened["id"] == dispute.pk
    assert (opened["out_order_no"], opened["status"], opened["reason"]) == (order.out_order_no, "open", "faulty")
    assert (opened["disputed_amount"], opened["after_charge"], opened["outcome"]) == ("25.00", True, None)
    assert opened["description"] == "broken screen" and opened["respond_by"].endswith("+08:00")
    responded = only("dispute.responded")
    assert (responded["status"], responded["response_text"]) == ("merchant_responded", "we will check")
    decided = only("dispute.decided")
    assert (decided["status"], decided["outcome"], decided["decision_reason"]) == (
        "decided",
        "consumer_won",
        "photos show damage",
    )
    assert decided["decided_at"] is not None and decided["closed_at"] is not None
    assert only("refund.succeeded")["dispute_id"] == dispute.pk
    assert only("refund.succeeded")["amount"] == "25.00"


@pytest.mark.django_db
def test_dispute_withdrawn_and_merchant_won_are_enqueued(merchant, listing):
    subscribe(merchant, "dispute.*")
    consumer = ConsumerFactory()
    first = charged_order(listing, consumer, amount="20.00")
    second = charged_order(listing, consumer, amount="20.00")

    a = dispute_open(actor=None, consumer=consumer, order=first, reason="not_received", description="")
    dispute_withdraw(actor=None, dispute=a, consumer=consumer, reason="it came")
    b = dispute_open(actor=None, consumer=consumer, order=second, reason="wrong_amount", description="")
    dispute_decide(actor=None, dispute=b, outcome=DisputeOutcome.MERCHANT_WON, reason="receipt matches", gateway=CLEAN)

    assert [(e.type, e.payload["id"]) for e in events("dispute")] == [
        ("dispute.opened", a.pk),
        ("dispute.withdrawn", a.pk),
        ("dispute.opened", b.pk),
        ("dispute.decided", b.pk),
    ]
    assert only("dispute.decided")["outcome"] == "merchant_won"
    assert only("dispute.withdrawn")["status"] == "withdrawn"
    assert events("refund") == []


# --------------------------------------------------------------------------- settlements


@pytest.mark.django_db
def test_settlement_created_and_paid_are_enqueued_per_batch(merchant, listing):
    subscribe(merchant, "settlement.*")
    charged_order(listing, ConsumerFactory(), amount="100.00")

    [batch_id] = settle_merchants(business_date=timezone.localdate())
    payouts_send_due(gateway=CLEAN)

    assert list(WebhookEvent.objects.order_by("id").values_list("type", "ordering_key")) == [
        ("settlement.created", f"settlement:{batch_id}"),
        ("settlement.paid", f"settlement:{batch_id}"),
    ]
    created, paid = only("settlement.created"), only("settlement.paid")
    batch = SettlementBatch.objects.get(pk=batch_id)
    assert created["object"] == "settlement" and created["id"] == batch_id
    assert created["business_date"] == batch.business_date.isoformat()
    assert (created["gross_amount"], created["fee_amount"], created["net_amount"], created["item_count"]) == (
        "100.00",
        "0.60",
        "99.40",
        2,
    )
    assert created["payout"]["status"] == "pending" and created["payout"]["amount"] == "99.40"
    assert paid["payout"]["status"] == "paid" and paid["payout"]["paid_at"].endswith("+08:00")
    assert paid["payout"]["reference"].startswith("spo_")


@pytest.mark.django_db
def test_settlement_payout_failed_is_enqueued_with_the_code(listing, merchant):
    merchant.settlement_account_number = "6225880100000000"  # a closed sandbox account
    merchant.save(update_fields=["settlement_account_number"])
    subscribe(merchant, "settlement.payout_failed")
    charged_order(listing, ConsumerFactory(), amount="10.00")
    settle_merchants(business_date=timezone.localdate())

    payouts_send_due(gateway=CLEAN)

    payload = only("settlement.payout_failed")
    assert payload["payout"]["status"] == "failed"
    assert payload["payout"]["failure_code"] == "account_closed"
    assert payload["payout"]["next_attempt_at"] is not None
    assert [e.type for e in WebhookEvent.objects.all()] == ["settlement.payout_failed"]


# --------------------------------------------------------------------------- filters and rollbacks


@pytest.mark.django_db
def test_each_endpoint_gets_only_the_families_and_types_it_subscribes_to(merchant, listing):
    opened_only = subscribe(merchant, "dispute.opened")
    settlements = subscribe(merchant, "settlement.*")
    orders = subscribe(merchant, "order.*")
    consumer = ConsumerFactory()
    order = charged_order(listing, consumer, amount="50.00")

    dispute = dispute_open(actor=None, consumer=consumer, order=order, reason="faulty", description="")
    dispute_decide(actor=None, dispute=dispute, outcome=DisputeOutcome.MERCHANT_WON, reason="fine", gateway=CLEAN)
    refund(order, "5.00")
    settle_merchants(business_date=timezone.localdate())

    def received(endpoint) -> set[str]:
        return set(WebhookDelivery.objects.filter(endpoint=endpoint).values_list("event__type", flat=True))

    assert received(opened_only) == {"dispute.opened"}
    assert received(settlements) == {"settlement.created"}
    assert "refund.succeeded" not in received(orders) and all(t.startswith("order.") for t in received(orders))
    # Events nobody subscribes to are not written at all.
    assert not WebhookEvent.objects.filter(type__in=["dispute.decided", "refund.succeeded"]).exists()


@pytest.mark.django_db
def test_a_batch_of_sandbox_orders_goes_to_test_mode_endpoints_only(merchant, listing):
    live = subscribe(merchant, "settlement.*")
    test, _secret = webhook_endpoint_create(
        actor=None, merchant=merchant, url="http://127.0.0.1:9/test", event_types=["settlement.*"], livemode=False
    )
    charged_order(listing, ConsumerFactory(is_sandbox=True), amount="10.00")

    settle_merchants(business_date=timezone.localdate())

    [event] = events("settlement")
    assert event.livemode is False
    assert list(WebhookDelivery.objects.values_list("endpoint_id", flat=True)) == [test.pk]
    assert not WebhookDelivery.objects.filter(endpoint=live).exists()


@pytest.mark.django_db
def test_another_merchants_endpoint_gets_nothing(merchant, listing):
    from tests.factories import MerchantFactory

    other = subscribe(MerchantFactory(), "*")
    charged_order(listing, ConsumerFactory(), amount="10.00")
    settle_merchants(business_date=timezone.localdate())

    assert WebhookDelivery.objects.filter(endpoint=other).count() == 0


def _fail_after(module, name: str, monkeypatch, event_type: str | None = None) -> None:
    """Make ``module.name`` write its event for real and then fail, so the surrounding transaction rolls back."""
    real = getattr(module, name)

    def write_then_fail(**kwargs: Any) -> None:
        real(**kwargs)
        if event_type is None or kwargs.get("event_type") == event_type:
            assert WebhookEvent.objects.exists()  # the event was in the outbox …
            raise RuntimeError("the change fails after its event was written")

    monkeypatch.setattr(module, name, write_then_fail)


@pytest.mark.django_db
def test_rolled_back_dispute_leaves_no_event(merchant, listing, monkeypatch):
    subscribe(merchant, "*")
    consumer = ConsumerFactory()
    order = charged_order(listing, consumer, amount="10.00")
    before = WebhookEvent.objects.count()
    _fail_after(disputes_module, "dispute_webhook", monkeypatch)

    with pytest.raises(RuntimeError):
        dispute_open(actor=None, consumer=consumer, order=order, reason="faulty", description="")

    assert WebhookEvent.objects.count() == before  # … and left with the rolled-back change
    assert not Dispute.objects.exists()


@pytest.mark.django_db
def test_rolled_back_refund_record_leaves_no_event(merchant, listing, monkeypatch):
    subscribe(merchant, "refund.*")
    order = charged_order(listing, ConsumerFactory(), amount="10.00")
    _fail_after(refunds_module, "refund_webhook", monkeypatch)

    with pytest.raises(RuntimeError):
        refund(order, "4.00")

    assert events("refund") == []
    assert Refund.objects.get().status == "pending"  # the outcome was not recorded either
    assert not LedgerTransaction.objects.filter(kind="refund").exists()


@pytest.mark.django_db
def test_rolled_back_settlement_and_payout_leave_no_event(merchant, listing, monkeypatch):
    subscribe(merchant, "settlement.*")
    charged_order(listing, ConsumerFactory(), amount="10.00")
    with monkeypatch.context() as patch:
        _fail_after(settlement_module, "settlement_webhook", patch)
        with pytest.raises(RuntimeError):
            settle_merchants(business_date=timezone.localdate())
    assert events("settlement") == [] and not SettlementBatch.objects.exists()

    settle_merchants(business_date=timezone.localdate())
    _fail_after(settlement_module, "settlement_webhook", monkeypatch, event_type="settlement.paid")
    with pytest.raises(RuntimeError):
        payouts_send_due(gateway=CLEAN)

    assert [e.type for e in events("settlement")] == ["settlement.created"]
    assert Payout.objects.get().status == PayoutStatus.SENDING  # recorded later by the reconcile job
    assert not LedgerTransaction.objects.filter(kind="payout").exists()
