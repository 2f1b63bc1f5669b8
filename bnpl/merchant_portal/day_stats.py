"""Keeping the dashboard's daily roll-up: the fold job, and the rebuild that repairs it (bnpl/models/order_stats.py).

The database writes the deltas (triggers of migration ``0017_merchant_day_stats``); this module folds them into
``bnpl_merchantdaystats`` and deletes them, in one transaction per batch, so that a reader's single statement over
the roll-up and the deltas counts every committed change once. Folds are serialised by a transaction-level
advisory lock taken with ``pg_try_advisory_xact_lock``: a second fold started meanwhile (the schedule overlapping
a slow run, a second cluster) finds the lock taken and returns at once, leaving the deltas to the first. Nothing
else ever waits on the fold: writers only insert deltas, readers read committed rows.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.db import connection, transaction

from bnpl.models.order_stats import DAY_AMOUNT_FIGURES, DAY_FIGURES, DAY_STATS_HORIZON_DAYS, DAY_STATS_TIME_ZONE
from bnpl.money import ZERO

logger = logging.getLogger(__name__)

#: Advisory lock key of the fold and of ``bnpl_merchant_day_stats_rebuild()`` (migration 0017 holds the same).
FOLD_LOCK_KEY = 0x626E706C_4453  # "bnpl" "DS"

#: Deltas folded per transaction: a batch's transaction is short (milliseconds per thousand deltas), and a
#: backlog after an outage is taken in several.
FOLD_BATCH = 20_000

# Every name below is a column of the roll-up (bnpl/models/order_stats.py), none comes from input.
_COLUMNS = ", ".join(DAY_FIGURES)
_SUMS = ", ".join(f"sum({name})" for name in DAY_FIGURES)
_ADD = ", ".join(f"{name} = s.{name} + EXCLUDED.{name}" for name in DAY_FIGURES)
_FOLD = (
    "WITH taken AS ("  # noqa: S608 - column names of the roll-up only
    " DELETE FROM bnpl_merchantdaydelta"
    " WHERE id IN (SELECT id FROM bnpl_merchantdaydelta ORDER BY id LIMIT %s)"
    f" RETURNING merchant_id, day, {_COLUMNS}"
    "), folded AS ("
    f" INSERT INTO bnpl_merchantdaystats AS s (merchant_id, day, {_COLUMNS})"
    f" SELECT merchant_id, day, {_SUMS} FROM taken GROUP BY merchant_id, day"
    f" ON CONFLICT (merchant_id, day) DO UPDATE SET {_ADD}"
    " RETURNING 1"
    ") SELECT (SELECT count(*) FROM taken), (SELECT count(*) FROM folded)"
)
# Days past the horizon get no more deltas (the triggers ignore their orders), so their figures stop being current.
_PRUNE = "DELETE FROM bnpl_merchantdaystats WHERE day < (now() AT TIME ZONE %s)::date - %s::int"


def day_stats_fold(*, batch: int = FOLD_BATCH, time_budget_s: float = 50.0) -> dict[str, int]:
    """Fold the committed deltas into the roll-up, ``batch`` at a time, until none is left or the budget is spent.

    Returns ``{"deltas": folded, "days": roll-up rows written, "pruned": days dropped, "skipped": 0 or 1}``;
    ``skipped`` is 1 when another fold held the lock (this call then did nothing). Safe to run twice or at once.
    """
    deadline = time.monotonic() + time_budget_s
    report = {"deltas": 0, "days": 0, "pruned": 0, "skipped": 0}
    first = True
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [FOLD_LOCK_KEY])
            if not cursor.fetchone()[0]:
                report["skipped"] = 1
                return report
            if first:
                cursor.execute(_PRUNE, [DAY_STATS_TIME_ZONE, DAY_STATS_HORIZON_DAYS])
                report["pruned"] = cursor.rowcount
                first = False
            cursor.execute(_FOLD, [batch])
            taken, written = cursor.fetchone()
        report["deltas"] += taken
        report["days"] += written
        if taken < batch or time.monotonic() >= deadline:
            return report


def day_stats_fold_task() -> dict[str, int]:
    """The ``fold-merchant-day-stats`` job (bnpl/schedules.py): one fold, its report as the task's result."""
    report = day_stats_fold()
    if report["deltas"] >= FOLD_BATCH * 10:
        logger.warning("Merchant day figures: folded a backlog of %s deltas", report["deltas"])
    return report


def day_stats_rebuild() -> int:
    """Recompute the whole roll-up from the orders and disputes of the horizon; returns the rows written.

    For repairs and for data loaded with the triggers disabled (``bench/generate.py``). It blocks every writer of
    orders and disputes while it runs (a SHARE lock: seconds for a million recent orders), so it is not a job.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT bnpl_merchant_day_stats_rebuild()")
        return int(cursor.fetchone()[0])


def zero_figures() -> dict[str, Any]:
    """A day with no orders: every count 0 and every amount ``Decimal('0.00')``."""
    return {name: (ZERO if name in DAY_AMOUNT_FIGURES else 0) for name in DAY_FIGURES}
