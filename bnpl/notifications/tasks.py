"""django-q2 tasks of notifications and reminders (declared in ``bnpl/schedules.py``). Each is safe to run twice."""

from __future__ import annotations

from .reminders import send_merchant_digests, sweep_all
from .services import deliver_due


def send_reminders() -> dict[str, int]:
    """Every few minutes: write the reminders that have come due (deduplicated by key)."""
    return sweep_all()


def deliver_notifications(limit: int = 500) -> dict[str, int]:
    """Every minute: send due email and SMS deliveries; failures are retried, never raised."""
    return deliver_due(limit=limit).as_dict()


def merchant_digests() -> dict[str, int]:
    """Daily: failed charges and disputes near their deadline, to each merchant's members."""
    return send_merchant_digests()
