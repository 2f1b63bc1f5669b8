"""Background jobs of the pay-later core (run by django-q2 from ``setup_schedules``).

Every job sweeps what is due from the database, so a lost or duplicated task heals
on the next run, and claims its rows with ``FOR UPDATE SKIP LOCKED`` so several
workers can share one run without waiting for each other or doing a row twice.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from .charging import reconcile_unknown_attempts, run_charges
from .charging_bulk import due_orders_count
from .choices import OrderStatus
from .models import ChargeRun, CreditOrder
from .overdue import apply_guarantee, classify_overdue
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


def _run_summary(run: ChargeRun) -> dict[str, object]:
    # Kept small: django-q2 stores every task's result.
    return {
        "run": run.pk,
        "status": run.status,
        "claimed": run.claimed,
        "resent": run.resent,
        "succeeded": run.succeeded,
        "declined": run.declined,
        "unknown": run.unknown,
        "errors": run.errors,
        "succeeded_amount": str(run.succeeded_amount),
    }


def charge_run(fan_out: int | None = None) -> dict[str, object]:
    """The charge run (every minute): charge due orders and retries, resend stalled attempts.

    Several of these may run at once (a backlog outlasts a minute; django-q2 may deliver
    twice): they share the work through ``SKIP LOCKED`` and stop within
    ``BNPL_CHARGE_RUN_TIME_BUDGET``, below the cluster's timeout.

    The schedule starts one run a minute, which one worker of one cluster picks up. So that a
    backlog is shared by every worker of every cluster, the scheduled run first enqueues up to
    ``fan_out - 1`` helper runs (default ``BNPL_CHARGE_RUN_FAN_OUT``), one per chunk due beyond
    its own; helpers are enqueued with ``fan_out=1`` and never fan out themselves.
    """
    fan_out = settings.BNPL_CHARGE_RUN_FAN_OUT if fan_out is None else fan_out
    if fan_out > 1:
        chunk = settings.BNPL_CHARGE_CHUNK_SIZE
        due = due_orders_count(now=timezone.now(), limit=chunk * fan_out)
        for _ in range(min(fan_out, -(-due // chunk)) - 1):
            async_task("bnpl.tasks.charge_run", 1, task_name="charge-run helper")
    return _run_summary(run_charges())


def reconcile_charges() -> dict[str, object]:
    """Reconcile attempts whose outcome is unknown (every 5 minutes)."""
    return _run_summary(reconcile_unknown_attempts())


def classify_overdue_orders() -> dict[str, int]:
    """Daily: orders past the grace period become overdue; DPD and buckets are refreshed."""
    report = classify_overdue()
    return {"marked_overdue": report.marked_overdue, "dpd_updated": report.dpd_updated}


def apply_platform_guarantee() -> int:
    """Hourly: the platform guarantee for orders whose collection failed for the guarantee window."""
    return apply_guarantee()
