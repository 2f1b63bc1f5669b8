"""Arrangers shared by the refund, dispute, settlement and lifecycle tests.

``charged_order`` builds a due order and charges it through the real charge run (in
this thread, against the in-process sandbox), so refunds have a real provider charge.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from bnpl.charging import run_charges
from bnpl.choices import OrderStatus
from bnpl.models import CreditOrder, LedgerTransaction
from consumers.models import Consumer
from tests.bnpl.charging_helpers import due_order, fund

S = OrderStatus
D = Decimal


def charged_order(listing: Any, consumer: Consumer, *, amount: str = "100.00", balance: str = "1000.00") -> CreditOrder:
    """An order of ``amount`` charged once by the charge run (status ``paid``, fee posted)."""
    if not consumer.sandbox_sources.exists():
        fund(consumer, balance)
    order = due_order(listing, consumer, amount=amount)
    run_charges(threads=1)
    order.refresh_from_db()
    assert order.status == S.PAID, order.status
    return order


def ledger_keys(order: CreditOrder) -> list[str]:
    return sorted(LedgerTransaction.objects.filter(order=order).values_list("idempotency_key", flat=True))
