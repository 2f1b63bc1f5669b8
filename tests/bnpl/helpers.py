"""Arrangers and probes shared by the credit-order tests.

``order_in`` builds an order directly in any state with a consistent hold: the
order's ``hold_amount`` is also added to the consumer's open exposure, exactly as
the services would have left it. It is for arranging a test only; every behaviour
under test goes through :mod:`bnpl.services`.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import F
from django.utils import timezone

from bnpl.choices import HOLDING_STATUSES, OrderStatus
from bnpl.models import CreditOrder, OrderEvent
from consumers.models import CreditProfile, PromiseRecord

S = OrderStatus
AMOUNT_DUE = Decimal("5.00")
AFTER_COMPLETION = {S.COMPLETED, S.COLLECTING, S.OVERDUE, S.PAID, S.PARTIALLY_REFUNDED, S.REFUNDED, S.WRITTEN_OFF}
CLOSED = {S.DECLINED, S.EXPIRED, S.CANCELLED}


def order_in(
    status: str,
    *,
    listing,
    consumer=None,
    out_order_no: str | None = None,
    expires_in: timedelta = timedelta(minutes=30),
    **extra: Any,
) -> CreditOrder:
    """An order in ``status`` as the services would have left it (hold included)."""
    now = timezone.now()
    values: dict[str, Any] = {
        "merchant": listing.merchant,
        "listing": listing,
        "consumer": consumer,
        "out_order_no": out_order_no or f"O-{secrets.token_hex(4)}",
        "title": listing.title,
        "scenario": listing.scenario,
        "confirm_mode": listing.confirm_mode,
        "pricing_rule": listing.pricing_rule,
        "status": status,
        "max_amount": listing.max_amount,
    }
    if status == S.PENDING_CONFIRMATION:
        values.update(confirmation_token=secrets.token_urlsafe(32), expires_at=now + expires_in)
    if status not in {S.CREATED, S.PENDING_CONFIRMATION, S.DECLINED, S.EXPIRED}:
        values["confirmed_at"] = now - timedelta(hours=1)
    if status in AFTER_COMPLETION:
        values.update(amount_due=AMOUNT_DUE, completed_at=now, due_at=now)
    if status in CLOSED:
        values["closed_at"] = now
    if status == S.ACTIVE:
        values["hold_amount"] = listing.max_amount
    elif status in HOLDING_STATUSES:
        values["hold_amount"] = AMOUNT_DUE
    values.update(extra)
    order = CreditOrder.objects.create(**values)
    if order.hold_amount:
        CreditProfile.objects.filter(consumer=consumer).update(
            open_exposure_amount=F("open_exposure_amount") + order.hold_amount
        )
    return order


def exposure(consumer) -> Decimal:
    return CreditProfile.objects.get(consumer=consumer).open_exposure_amount


def snapshot(order: CreditOrder) -> dict[str, Any]:
    """Everything a refused action must leave as it was."""
    fresh = CreditOrder.objects.get(pk=order.pk)
    return {
        "order": {f.attname: getattr(fresh, f.attname) for f in CreditOrder._meta.concrete_fields},
        "exposure": exposure(fresh.consumer) if fresh.consumer_id else None,
        "events": OrderEvent.objects.filter(order=fresh).count(),
        "usage": fresh.usage_events.count(),
        "bill_lines": fresh.bill_lines.count(),
        "promise_records": PromiseRecord.objects.filter(order_id=fresh.pk).count(),
    }


def run_concurrently(*calls: Callable[[], Any]) -> list[Any]:
    """Run each call in its own thread (its own database connection), released together.

    Returns each call's result or the exception it raised, in the order given.
    """
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def worker(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = call()
        except Exception as exc:  # handed back to the test, which asserts on it
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck (deadlock?)"
    return results
