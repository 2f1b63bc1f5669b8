"""What the pay-later core tells merchants: webhook payloads for order and agreement events.

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
    from .models import Agreement, CreditOrder, OrderEvent


def _time(value: datetime | None) -> str | None:
    return timezone.localtime(value).isoformat() if value is not None else None


def _amount(value: Any) -> str | None:
    return None if value is None else f"{value:.2f}"


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


def order_event_webhook(*, order: CreditOrder, event: OrderEvent) -> None:
    """Enqueue ``order.<to_status>`` for an order transition, ordered per order."""
    payload = order_payload(order)
    payload["previous_status"] = event.from_status
    payload["reason"] = event.reason
    payload["occurred_at"] = _time(event.created_at)
    webhook_event_enqueue(
        merchant_id=order.merchant_id,
        event_type=f"order.{event.to_status}",
        payload=payload,
        ordering_key=f"order:{order.pk}",
        livemode=lambda: consumer_livemode(order.consumer_id),
    )


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
