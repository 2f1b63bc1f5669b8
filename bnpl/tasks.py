"""Background jobs of the pay-later core (run by django-q2 from ``setup_schedules``).

Every job sweeps what is due from the database, so a lost or duplicated task heals
on the next run, and claims its rows with ``FOR UPDATE SKIP LOCKED`` so several
workers can share one run without waiting for each other or doing a row twice.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from .choices import OrderStatus
from .models import CreditOrder
from .services import credit_order_expire

EXPIRY_CHUNK = 100


def expire_pending_orders(limit: int = 500) -> int:
    """Expire confirm-each-time orders left unconfirmed past their deadline; returns how many.

    Works in chunks of :data:`EXPIRY_CHUNK`, one transaction each, so a long backlog
    never holds many locks for long. Rows another worker has claimed are skipped
    (it will expire them); rows already expired no longer match. Running it twice, or
    on two workers at once, therefore expires each order once.
    """
    expired = 0
    while expired < limit:
        size = min(EXPIRY_CHUNK, limit - expired)
        with transaction.atomic():
            # Uses the partial index order_pending_expiry_idx.
            batch = list(
                CreditOrder.objects.select_for_update(skip_locked=True)
                .filter(status=OrderStatus.PENDING_CONFIRMATION, expires_at__lte=timezone.now())
                .order_by("expires_at", "id")[:size]
            )
            for order in batch:
                credit_order_expire(order=order)
        expired += len(batch)
        if len(batch) < size:
            break
    return expired
