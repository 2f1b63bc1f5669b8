"""Background jobs of the merchants app (run by django-q2; declared in ``bnpl.schedules.JOBS``)."""

from __future__ import annotations

import time
from datetime import timedelta

from .services import IDEMPOTENCY_RETENTION, idempotency_records_purge, webhook_deliveries_run

#: How long one run of the delivery job keeps sweeping. django-q2 schedules a job at most once a
#: minute, but the retry schedule starts 0 s, 15 s, 15 s: so each run sweeps for most of its minute
#: (the next run starts as this one ends; an overlap is harmless — claims skip locked rows).
SWEEP_FOR_S = 55.0
IDLE_SLEEP_S = 1.0


def deliver_webhooks(run_for_s: float = SWEEP_FOR_S, batch: int = 50) -> int:
    """Send due webhook deliveries for about ``run_for_s`` seconds; returns how many attempts were made.

    Safe to run twice at once (deliveries are claimed with a lease and ``SKIP LOCKED``) and to lose
    (a due delivery waits for the next run). Well under the cluster's ``timeout``.
    """
    deadline = time.monotonic() + run_for_s
    attempted = 0
    while True:
        done = webhook_deliveries_run(limit=batch)
        attempted += done
        if time.monotonic() >= deadline:
            return attempted
        if done < batch:
            time.sleep(min(IDLE_SLEEP_S, max(0.0, deadline - time.monotonic())))


def purge_idempotency_records(older_than_hours: int = int(IDEMPOTENCY_RETENTION.total_seconds() // 3600)) -> int:
    """Delete stored Idempotency-Key responses older than ``older_than_hours`` (at least 24)."""
    total = 0
    while True:
        deleted = idempotency_records_purge(older_than=timedelta(hours=older_than_hours))
        total += deleted
        if deleted == 0:
            return total
