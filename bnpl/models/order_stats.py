"""The merchant dashboard's daily figures: a roll-up per (merchant, Beijing day of creation) and its deltas.

The dashboard shows the *current* state of a merchant's orders grouped by the day they were created: an order
created 20 days ago that becomes overdue, paid, refunded or guaranteed today changes the figures of its day.
Reading the orders themselves costs the merchant's volume (82,000 rows for 30 days of a merchant with a million
orders a year, about a second), so the figures are kept in two tables written by the database:

* :class:`MerchantDayDelta` — append-only. Statement-level triggers on ``bnpl_creditorder`` and ``bnpl_dispute``
  (migration ``0017_merchant_day_stats``) insert, for each statement that changes orders or disputes, one row per
  (merchant, day) it touched: the new rows' contributions minus the old rows' (transition tables). Writers only
  ever INSERT here, so the charge run's workers updating orders of the same merchant and day in parallel never
  wait on each other for a shared counter row, and cannot deadlock over one.
* :class:`MerchantDayStats` — one row per (merchant, day): the deltas folded in by the ``fold-merchant-day-stats``
  job every minute (``bnpl.merchant_portal.day_stats.day_stats_fold``), which deletes the deltas it folds in the
  same transaction, so a reader's single statement sees every committed change exactly once, in one table or
  the other.

The dashboard reads both for one merchant (``bnpl.merchant_portal.selectors.merchant_dashboard``): about 30 roll-up
rows and the few deltas of the last minute, whatever the merchant's volume. Only the last
:data:`DAY_STATS_HORIZON_DAYS` days are kept (the dashboard shows 30); older days get no deltas and are pruned.
"""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _

#: Days (Beijing dates, today included back to today − horizon) the roll-up keeps. The triggers of migration 0017
#: and ``day_stats_fold`` hold the same number; it must exceed the dashboard's longest window (30 days) with room
#: for transactions that straddle midnight and for a fold that runs late.
DAY_STATS_HORIZON_DAYS = 45

#: The business day the figures are grouped by: orders are shown and filtered in Beijing time
#: (``settings.TIME_ZONE``); the triggers group by the same zone.
DAY_STATS_TIME_ZONE = "Asia/Shanghai"

#: The figures, in column order: counts, then amounts. ``disputes`` comes from ``bnpl_dispute``, the rest from the
#: order row itself (``docs/merchant_orders.md`` defines each).
DAY_COUNT_FIGURES = (
    "orders",
    "approved",
    "declined",
    "billed",
    "charge_tried",
    "charged",
    "overdue",
    "guaranteed",
    "refunded",
    "dpd_m0",
    "dpd_m1",
    "dpd_m2",
    "dpd_m3",
    "disputes",
)
DAY_AMOUNT_FIGURES = ("gmv", "guaranteed_amount", "refunded_amount")
DAY_FIGURES = DAY_COUNT_FIGURES + DAY_AMOUNT_FIGURES


class _DayFigures(models.Model):
    """The figure columns shared by the roll-up and its deltas (a delta's may be negative)."""

    orders = models.IntegerField(default=0)
    approved = models.IntegerField(default=0)
    declined = models.IntegerField(default=0)
    billed = models.IntegerField(default=0)
    charge_tried = models.IntegerField(default=0)
    charged = models.IntegerField(default=0)
    overdue = models.IntegerField(default=0)
    guaranteed = models.IntegerField(default=0)
    refunded = models.IntegerField(default=0)
    dpd_m0 = models.IntegerField(default=0)
    dpd_m1 = models.IntegerField(default=0)
    dpd_m2 = models.IntegerField(default=0)
    dpd_m3 = models.IntegerField(default=0)
    disputes = models.IntegerField(default=0)
    gmv = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    guaranteed_amount = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    refunded_amount = models.DecimalField(max_digits=14, decimal_places=2, default=0)

    class Meta:
        abstract = True


class MerchantDayStats(_DayFigures):
    """The dashboard figures of one merchant's orders created on one Beijing day, as of the last fold.

    Written only by ``day_stats_fold`` and ``day_stats_rebuild`` (never by a request or the charge run). The
    merchant is not a database foreign key: rows are written by set-based SQL from orders that already reference
    the merchant, and a per-row key check would only add work to every fold.
    """

    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.CASCADE, db_constraint=False, related_name="+")
    day = models.DateField(_("Day"))

    class Meta:
        verbose_name = _("Merchant day figures")
        verbose_name_plural = _("Merchant day figures")
        constraints = [
            # The fold's upsert target and the dashboard's read (one merchant, a range of days).
            models.UniqueConstraint(fields=["merchant", "day"], name="merchant_day_stats_unique"),
        ]
        indexes = [
            # The fold's prune of days past the horizon.
            models.Index(fields=["day"], name="merchant_day_stats_day_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.merchant_id} {self.day}: {self.orders}"


class MerchantDayDelta(_DayFigures):
    """A change to :class:`MerchantDayStats` not folded in yet: what one statement did to one (merchant, day).

    Inserted by the triggers of migration 0017 in the writer's transaction (so a rolled-back change leaves none),
    deleted by the fold that adds it to the roll-up. ``created_at`` shows how far behind the fold is.
    """

    id = models.BigAutoField(primary_key=True)
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.CASCADE, db_constraint=False, related_name="+")
    day = models.DateField(_("Day"))
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        verbose_name = _("Merchant day figures change")
        verbose_name_plural = _("Merchant day figures changes")
        indexes = [
            # The dashboard adds a merchant's unfolded deltas to the roll-up.
            models.Index(fields=["merchant", "day"], name="merchant_day_delta_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.merchant_id} {self.day}: {self.orders:+d}"
