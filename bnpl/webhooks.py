"""What the pay-later core tells merchants: webhook payloads for order, agreement, refund, dispute and
settlement events.

The services call these inside the transaction that makes the change, so the outbox row
(:func:`merchants.services.webhook_event_enqueue`) commits with the change or not at all. The
payload is a snapshot at the moment of the change: amounts as decimal strings, times in ISO 8601
with their offset, the same shapes the REST API uses.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from consumers.models import Consumer
from merchants.services import webhook_event_enqueue

if TYPE_CHECKING:
    from .models import Agreement, ChargeAttempt, CreditOrder, Dispute, OrderEvent, Payout, Refund, SettlementBatch


def _time(value: datetime | None) -> str | None:
    return timezone.localtime(value).isoformat() if value is not None else None


def _amount(value: Any) -> str | None:
    return None if value is None else f"{value:.2f}"


def consumers_livemode(consumer_ids: set[int]) -> dict[int, bool]:
    """``consumer_livemode`` for many consumers in one query."""
    sandbox = set(Consumer.objects.filter(pk__in=consumer_ids, is_sandbox=True).values_list("pk", flat=True))
    return {pk: pk not in sandbox for pk in consumer_ids}


def consumer_livemode(consumer_id: int | None) -> bool:
    """An order or agreement is test-mode data exactly when its consumer is a sandbox consumer."""
    if consumer_id is None:
        return True
    is_sandbox = Consumer.objects.filter(pk=consumer_id).values_list("is_sandbox", flat=True).first()
    return not is_sandbox


def order_payload(order: CreditOrder) -> dict[str, Any]:
    """The order as webhook receivers see it (a subset of the API's order object)."""
    return {
        "object": "order",
        "id": order.pk,
        "out_order_no": order.out_order_no,
        "status": order.status,
        "listing_id": order.listing_id,
        "consumer_id": order.consumer_id,
        "agreement_id": order.agreement_id,
        "scenario": order.scenario,
        "max_amount": _amount(order.max_amount),
        "amount_due": _amount(order.amount_due),
        "created_at": _time(order.created_at),
        "confirmed_at": _time(order.confirmed_at),
        "completed_at": _time(order.completed_at),
        "due_at": _time(order.due_at),
        "closed_at": _time(order.closed_at),
        "close_reason": order.close_reason,
    }


def order_event_payload(order: CreditOrder, event: OrderEvent) -> dict[str, Any]:
    """``order.<to_status>``'s payload: the order after the transition, and what it came from and why."""
    payload = order_payload(order)
    payload["previous_status"] = event.from_status
    payload["reason"] = event.reason
    payload["occurred_at"] = _time(event.created_at)
    return payload


def _order_webhook(order: CreditOrder, event_type: str, payload: dict[str, Any]) -> None:
    """Enqueue an event about ``order``: to its merchant, in the order's delivery sequence, in its consumer's mode.

    Every event about one order (its transitions, charges, refunds, disputes) shares the ``order:<id>`` ordering
    key, so a receiver never sees a refund before the charge it refunds.
    """
    webhook_event_enqueue(
        merchant_id=order.merchant_id,
        event_type=event_type,
        payload=payload,
        ordering_key=f"order:{order.pk}",
        livemode=lambda: consumer_livemode(order.consumer_id),
    )


def order_event_webhook(*, order: CreditOrder, event: OrderEvent) -> None:
    """Enqueue ``order.<to_status>`` for an order transition, ordered per order."""
    _order_webhook(order, f"order.{event.to_status}", order_event_payload(order, event))


def agreement_payload(agreement: Agreement) -> dict[str, Any]:
    return {
        "object": "agreement",
        "id": agreement.pk,
        "status": agreement.status,
        "listing_id": agreement.listing_id,
        "consumer_id": agreement.consumer_id,
        "signed_at": _time(agreement.signed_at),
        "closed_at": _time(agreement.closed_at),
        "close_reason": agreement.close_reason,
    }


def agreement_webhook(*, agreement: Agreement, event_type: str) -> None:
    """Enqueue ``agreement.signed`` or ``agreement.closed``, ordered per agreement."""
    webhook_event_enqueue(
        merchant_id=agreement.merchant_id,
        event_type=event_type,
        payload=agreement_payload(agreement),
        ordering_key=f"agreement:{agreement.pk}",
        livemode=lambda: consumer_livemode(agreement.consumer_id),
    )


# --------------------------------------------------------------------------- charges


def charge_payload(attempt: ChargeAttempt, order: CreditOrder) -> dict[str, Any]:
    """A charge attempt's final outcome as webhook receivers see it."""
    return {
        "object": "charge",
        "id": attempt.pk,
        "order_id": order.pk,
        "out_order_no": order.out_order_no,
        "sequence": attempt.sequence,
        "trigger": attempt.trigger,
        "amount": _amount(attempt.amount),
        "status": attempt.status,
        "decline_code": attempt.decline_code,
        "reference": attempt.gateway_reference,
        "requested_at": _time(attempt.requested_at),
        "finished_at": _time(attempt.finished_at),
        "next_attempt_at": _time(order.next_attempt_at),
    }


def charge_webhook(*, attempt: ChargeAttempt, order: CreditOrder) -> None:
    """Enqueue ``charge.succeeded`` or ``charge.declined``, ordered per order (before the order's own event).

    Only the two outcomes a merchant acts on: ``unknown`` is the platform's to settle (reconciliation
    follows with one of the two), and ``not_found`` means no money moved and nothing was declined.
    """
    _order_webhook(order, f"charge.{attempt.status}", charge_payload(attempt, order))


# --------------------------------------------------------------------------- refunds, disputes, settlements


def refund_payload(refund: Refund, order: CreditOrder) -> dict[str, Any]:
    """A refund as webhook receivers see it, with the order's refunded total after it."""
    return {
        "object": "refund",
        "id": refund.pk,
        "order_id": order.pk,
        "out_order_no": order.out_order_no,
        "out_refund_no": refund.idempotency_key,
        "amount": _amount(refund.amount),
        "reason": refund.reason,
        "status": refund.status,
        "decline_code": refund.decline_code,
        "dispute_id": refund.dispute_id,
        "order_amount_due": _amount(order.amount_due),
        "order_refunded_amount": _amount(order.refunded_amount),
        "requested_at": _time(refund.requested_at),
        "finished_at": _time(refund.finished_at),
    }


def refund_webhook(*, refund: Refund, order: CreditOrder) -> None:
    """Enqueue ``refund.succeeded`` or ``refund.declined`` (a refund's final outcome), ordered per order."""
    _order_webhook(order, f"refund.{refund.status}", refund_payload(refund, order))


def dispute_payload(dispute: Dispute, order: CreditOrder) -> dict[str, Any]:
    """A dispute as webhook receivers see it (the consumer's description and the merchant's response included)."""
    return {
        "object": "dispute",
        "id": dispute.pk,
        "order_id": order.pk,
        "out_order_no": order.out_order_no,
        "status": dispute.status,
        "reason": dispute.reason,
        "description": dispute.description,
        "disputed_amount": _amount(dispute.disputed_amount),
        "after_charge": dispute.after_charge,
        "outcome": dispute.outcome or None,
        "respond_by": _time(dispute.respond_by),
        "response_text": dispute.response_text,
        "responded_at": _time(dispute.responded_at),
        "decision_reason": dispute.decision_reason,
        "decided_at": _time(dispute.decided_at),
        "closed_at": _time(dispute.closed_at),
        "created_at": _time(dispute.created_at),
    }


def dispute_webhook(*, dispute: Dispute, order: CreditOrder, event_type: str) -> None:
    """Enqueue ``dispute.opened``, ``dispute.responded``, ``dispute.decided`` or ``dispute.withdrawn``, per order."""
    _order_webhook(order, event_type, dispute_payload(dispute, order))


def settlement_livemode(batch_id: int) -> bool:
    """A batch is live unless every order in it belongs to a sandbox consumer (test-mode money only)."""
    from .models import SettlementItem  # the models import this module's callers, not the reverse

    lines = SettlementItem.objects.filter(batch_id=batch_id, order__isnull=False)
    return not lines.exists() or lines.filter(order__consumer__is_sandbox=False).exists()


def settlement_payload(batch: SettlementBatch, payout: Payout | None) -> dict[str, Any]:
    """A settlement batch and its payout as webhook receivers see them (the API's settlement object, and more)."""
    return {
        "object": "settlement",
        "id": batch.pk,
        "business_date": batch.business_date.isoformat(),
        "cutoff_at": _time(batch.cutoff_at),
        "gross_amount": _amount(batch.gross_amount),
        "fee_amount": _amount(batch.fee_amount),
        "refund_amount": _amount(batch.refund_amount),
        "adjustment_amount": _amount(batch.adjustment_amount),
        "held_amount": _amount(batch.held_amount),
        "released_amount": _amount(batch.released_amount),
        "net_amount": _amount(batch.net_amount),
        "item_count": batch.item_count,
        "created_at": _time(batch.created_at),
        "payout": None
        if payout is None
        else {
            "id": payout.pk,
            "amount": _amount(payout.amount),
            "status": payout.status,
            "attempts": payout.attempts,
            "failure_code": payout.failure_code,
            "reference": payout.reference,
            "paid_at": _time(payout.paid_at),
            "next_attempt_at": _time(payout.next_attempt_at),
        },
    }


def settlement_webhook(*, batch: SettlementBatch, payout: Payout | None, event_type: str) -> None:
    """Enqueue ``settlement.created``, ``settlement.paid`` or ``settlement.payout_failed``, ordered per batch."""
    webhook_event_enqueue(
        merchant_id=batch.merchant_id,
        event_type=event_type,
        payload=settlement_payload(batch, payout),
        ordering_key=f"settlement:{batch.pk}",
        livemode=lambda: settlement_livemode(batch.pk),
    )
