"""Reads of the merchant portal's order pages and dashboard, always scoped to one merchant.

Built to stay fast for a merchant holding 100,000 orders in a table of millions:

* the order list pages by **keyset** (``(sort key, id)`` after / before a cursor) on the indexes
  ``order_merchant_created_idx`` / ``order_merchant_status_idx`` / ``order_merchant_amount_idx``, never by
  OFFSET, and counts at most :data:`COUNT_CAP` rows ("10,000+");
* the dashboard is one query whatever the row count: 30 rows of the merchant's daily roll-up plus the deltas not
  folded into it yet (bnpl/models/order_stats.py); the windows are sums of days. The straightforward computation
  from the orders, which the roll-up must equal, is :func:`merchant_day_figures_scan`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import Case, Count, Exists, OuterRef, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce, Right, TruncDate
from django.http import Http404
from django.utils import timezone

from bnpl.choices import OrderStatus
from bnpl.models import (
    ChargeAttempt,
    CreditOrder,
    Dispute,
    MerchantDayDelta,
    MerchantDayStats,
    OrderEvent,
    Refund,
    UsageEvent,
)
from bnpl.models.charging import AttemptStatus
from bnpl.models.order_stats import DAY_FIGURES
from bnpl.money import ZERO
from consumers.models import Consumer
from merchants.models import Merchant

from .day_stats import zero_figures

S = OrderStatus
PAGE_SIZE = 50
COUNT_CAP = 10_000
USAGE_SHOWN = 100

#: Sort keys the list offers: name → (field, descending). Every key is NOT NULL, so keyset pages are exact.
SORTS: dict[str, tuple[str, bool]] = {
    "-created": ("created_at", True),
    "created": ("created_at", False),
    "-amount": ("max_amount", True),
    "amount": ("max_amount", False),
}
DEFAULT_SORT = "-created"

#: Statuses after the bill: the denominators of the dashboard's overdue rates and the GMV.
BILLED = frozenset({S.COMPLETED, S.COLLECTING, S.OVERDUE, S.PAID, S.PARTIALLY_REFUNDED, S.REFUNDED, S.WRITTEN_OFF})
APPROVED = frozenset(set(S) - {S.CREATED, S.DECLINED})
CHARGED = frozenset({S.PAID, S.PARTIALLY_REFUNDED, S.REFUNDED})
DPD_BUCKETS = ("M0", "M1", "M2", "M3+")


@dataclass
class OrderFilters:
    """What the order list is narrowed to (all optional); built by ``OrderFilterForm.filters()``."""

    statuses: list[str] = field(default_factory=list)
    scenario: str = ""
    listing_id: int | None = None
    created_from: dt.date | None = None  # Beijing dates, inclusive
    created_to: dt.date | None = None
    amount_min: Decimal | None = None
    amount_max: Decimal | None = None
    q: str = ""
    dpd_bucket: str = ""
    guaranteed: bool = False
    refunded: bool = False
    disputed: bool = False
    sort: str = DEFAULT_SORT


def day_start(day: dt.date) -> dt.datetime:
    """Midnight of ``day`` in the current (Beijing) time zone, aware."""
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def filtered_orders(*, merchant: Merchant, filters: OrderFilters) -> QuerySet[CreditOrder]:
    """``merchant``'s orders narrowed by ``filters`` (no ordering, no joins)."""
    qs = CreditOrder.objects.filter(merchant=merchant)
    f = filters
    if f.statuses:
        qs = qs.filter(status__in=f.statuses)
    if f.scenario:
        qs = qs.filter(scenario=f.scenario)
    if f.listing_id:
        qs = qs.filter(listing_id=f.listing_id)
    if f.created_from:
        qs = qs.filter(created_at__gte=day_start(f.created_from))
    if f.created_to:
        qs = qs.filter(created_at__lt=day_start(f.created_to + dt.timedelta(days=1)))
    amount = Coalesce("amount_due", "max_amount")
    if f.amount_min is not None:
        qs = qs.alias(shown_amount=amount).filter(shown_amount__gte=f.amount_min)
    if f.amount_max is not None:
        qs = qs.alias(shown_amount=amount).filter(shown_amount__lte=f.amount_max)
    q = f.q.strip()
    if q:
        if len(q) == 4 and q.isdigit():
            # The consumer's phone tail: the few consumers it matches (index consumer_phone_tail_idx on
            # right(phone, 4)), then their orders with this merchant (order_consumer_recent_idx).
            tails = Consumer.objects.annotate(tail=Right("phone", 4)).filter(tail=q).values("pk")
            qs = qs.filter(consumer_id__in=tails)
        else:
            qs = qs.filter(out_order_no__startswith=q)
    if f.dpd_bucket:
        qs = qs.filter(status=S.OVERDUE, dpd_bucket=f.dpd_bucket)
    if f.guaranteed:
        qs = qs.filter(guaranteed_at__isnull=False)
    if f.refunded:
        qs = qs.filter(refunded_amount__gt=0)
    if f.disputed:
        qs = qs.filter(Exists(Dispute.objects.filter(order=OuterRef("pk"))))
    return qs


@dataclass
class OrderPage:
    rows: list[CreditOrder]
    next_cursor: str = ""
    prev_cursor: str = ""
    total: int = 0
    total_capped: bool = False


def _cursor_of(order: CreditOrder, field_name: str) -> str:
    value = getattr(order, field_name)
    text = value.isoformat() if isinstance(value, dt.datetime) else str(value)
    return f"{text}~{order.pk}"


def _parse_cursor(cursor: str, field_name: str) -> tuple[Any, int] | None:
    text, _, pk = cursor.rpartition("~")
    try:
        value: Any = dt.datetime.fromisoformat(text) if field_name == "created_at" else Decimal(text)
        if isinstance(value, Decimal) and not value.is_finite():
            return None
        return value, int(pk)
    except (ValueError, ArithmeticError):
        return None


def _beyond(field_name: str, value: Any, pk: int, *, forward: bool) -> Q:
    """Rows after ``(value, pk)`` in the walk direction: ``(field, id) > (value, pk)`` or ``<``, index-friendly."""
    op = "gt" if forward else "lt"
    edge = "gte" if forward else "lte"
    return Q(**{f"{field_name}__{edge}": value}) & (Q(**{f"{field_name}__{op}": value}) | Q(**{f"pk__{op}": pk}))


def merchant_order_page(*, merchant: Merchant, filters: OrderFilters, after: str = "", before: str = "") -> OrderPage:
    """One page of the list: at most :data:`PAGE_SIZE` rows after (or before) a cursor; three queries at most."""
    field_name, descending = SORTS.get(filters.sort, SORTS[DEFAULT_SORT])
    base = filtered_orders(merchant=merchant, filters=filters)
    backwards = bool(before) and not after
    cursor = _parse_cursor(before if backwards else after, field_name) if (after or before) else None
    # Walking "forward" means towards larger keys; a descending list walks backwards through the keys.
    forward = descending == backwards
    qs = base
    if cursor:
        qs = qs.filter(_beyond(field_name, *cursor, forward=forward))
    sign = "" if forward else "-"
    qs = (
        qs.select_related("consumer", "listing")
        .only(
            "id",
            "out_order_no",
            "title",
            "scenario",
            "status",
            "max_amount",
            "amount_due",
            "refunded_amount",
            "dpd_bucket",
            "guaranteed_at",
            "charge_paused",
            "created_at",
            "consumer__phone",
            "listing__title",
        )
        .order_by(f"{sign}{field_name}", f"{sign}id")
    )
    rows = list(qs[: PAGE_SIZE + 1])
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    if backwards:
        rows.reverse()
    page = OrderPage(rows=rows)
    if rows:
        has_next = (not backwards and more) or backwards
        has_prev = (backwards and more) or (bool(cursor) and not backwards)
        page.next_cursor = _cursor_of(rows[-1], field_name) if has_next else ""
        page.prev_cursor = _cursor_of(rows[0], field_name) if has_prev else ""
    page.total = base.order_by()[: COUNT_CAP + 1].count()
    page.total_capped = page.total > COUNT_CAP
    page.total = min(page.total, COUNT_CAP)
    return page


# --------------------------------------------------------------------------- detail


@dataclass
class OrderDetail:
    order: CreditOrder
    events: list[OrderEvent]
    lines: list[Any]
    usage: list[UsageEvent]
    usage_count: int
    attempts: list[ChargeAttempt]
    refunds: list[Refund]
    disputes: list[Dispute]


def merchant_order_get(*, merchant: Merchant, order_id: int) -> CreditOrder:
    """``merchant``'s order ``order_id`` with its consumer and listing; another merchant's id → 404."""
    order = CreditOrder.objects.select_related("consumer", "listing").filter(merchant=merchant, pk=order_id).first()
    if order is None:
        raise Http404
    return order


def merchant_order_detail(*, merchant: Merchant, order_id: int) -> OrderDetail:
    """Everything the detail page shows, in a fixed number of queries whatever the order's history."""
    order = merchant_order_get(merchant=merchant, order_id=order_id)
    usage_qs = UsageEvent.objects.filter(order=order).order_by("-occurred_at", "-id")
    usage = list(usage_qs[:USAGE_SHOWN])
    usage_count = len(usage) if len(usage) < USAGE_SHOWN else usage_qs.count()
    return OrderDetail(
        order=order,
        events=list(OrderEvent.objects.filter(order=order).order_by("created_at", "id")),
        lines=list(order.bill_lines.all()),
        usage=usage,
        usage_count=usage_count,
        attempts=list(ChargeAttempt.objects.filter(order=order).order_by("sequence")),
        refunds=list(Refund.objects.filter(order=order).order_by("requested_at", "id")),
        disputes=list(Dispute.objects.filter(order=order).order_by("created_at", "id")),
    )


# --------------------------------------------------------------------------- dashboard

WINDOWS: tuple[tuple[str, int], ...] = (("today", 0), ("7d", 6), ("30d", 29))
#: The roll-up's DPD columns → the dashboard's names of the buckets.
_DPD_FIGURES = dict(zip(("dpd_m0", "dpd_m1", "dpd_m2", "dpd_m3"), DPD_BUCKETS, strict=True))


def _rate(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def merchant_day_figures(*, merchant: Merchant, first_day: dt.date) -> dict[dt.date, dict[str, Any]]:
    """``merchant``'s dashboard figures by Beijing day of creation, ``first_day`` onwards, from the daily roll-up.

    One statement, so one snapshot: the folded days (``MerchantDayStats``, one row a day) UNION ALL the deltas the
    fold has not taken yet (``MerchantDayDelta``, summed by day), added up here. A fold commits its deletions and
    its additions together, so each committed change is counted once whichever side it is on. The cost is about
    two rows a day whatever the merchant's volume. Returns ``{day: {figure: value}}`` (``DAY_FIGURES`` keys) for
    the days that have any row.
    """
    folded = (
        MerchantDayStats.objects.filter(merchant=merchant, day__gte=first_day)
        .order_by()
        .values_list("day", *DAY_FIGURES)
    )
    pending = (
        MerchantDayDelta.objects.filter(merchant=merchant, day__gte=first_day)
        .order_by()
        .values("day")
        .annotate(**{f"pending_{name}": Sum(name) for name in DAY_FIGURES})
        .values_list("day", *(f"pending_{name}" for name in DAY_FIGURES))
    )
    by_day: dict[dt.date, dict[str, Any]] = {}
    for day, *values in folded.union(pending, all=True):
        row = by_day.setdefault(day, zero_figures())
        for name, value in zip(DAY_FIGURES, values, strict=True):
            row[name] += value
    return by_day


def merchant_day_figures_scan(*, merchant: Merchant, first_day: dt.date) -> dict[dt.date, dict[str, Any]]:
    """The same figures computed from the orders themselves: their definition, which the roll-up must equal.

    What the dashboard ran before the roll-up (tests compare the two; an operator can too): every order of the
    period read and tested once, "charged" looked up in the attempts (a succeeded one, partial unique index), and
    the disputes by their order's day. Its cost grows with the merchant's volume (about a second for a merchant
    with a million orders a year), so no page calls it.
    """
    orders = CreditOrder.objects.filter(merchant=merchant, created_at__gte=day_start(first_day))
    charged = Case(
        When(
            Q(charge_attempt_count__gt=0, status__in=CHARGED),
            then=Exists(ChargeAttempt.objects.filter(order=OuterRef("pk"), status=AttemptStatus.SUCCEEDED)),
        ),
        default=Value(False),
    )
    billed = Q(status__in=BILLED)
    guaranteed = Q(guaranteed_at__isnull=False)
    refunded = Q(refunded_amount__gt=0)
    figures: dict[str, Any] = {
        "orders": Count("id"),
        "approved": Count("id", filter=Q(status__in=APPROVED)),
        "declined": Count("id", filter=Q(status=S.DECLINED)),
        "billed": Count("id", filter=billed),
        "gmv": Sum("amount_due", filter=billed, default=ZERO),
        "charge_tried": Count("id", filter=Q(charge_attempt_count__gt=0, charge_in_flight=False)),
        "charged": Count("id", filter=Q(charged_ok=True, charge_in_flight=False)),
        "overdue": Count("id", filter=Q(status=S.OVERDUE)),
        "guaranteed": Count("id", filter=guaranteed),
        "guaranteed_amount": Sum("amount_due", filter=guaranteed, default=ZERO),
        "refunded": Count("id", filter=refunded),
        "refunded_amount": Sum("refunded_amount", filter=refunded, default=ZERO),
        **{column: Count("id", filter=Q(status=S.OVERDUE, dpd_bucket=b)) for column, b in _DPD_FIGURES.items()},
    }
    by_day: dict[dt.date, dict[str, Any]] = {}
    for row in (
        orders.alias(charged_ok=charged).annotate(day=TruncDate("created_at")).values("day").annotate(**figures)
    ).order_by():
        day = row.pop("day")
        by_day[day] = {**zero_figures(), **row}
    disputes = (
        Dispute.objects.filter(merchant=merchant, order__created_at__gte=day_start(first_day))
        .annotate(day=TruncDate("order__created_at"))
        .values("day")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("day", "n")
    )
    for day, n in disputes:
        by_day.setdefault(day, zero_figures())["disputes"] = n
    return by_day


def _named(row: dict[str, Any]) -> dict[str, Any]:
    """A day's figures under the dashboard's names (``dpd_m3`` → ``dpd_M3+``)."""
    return {(f"dpd_{_DPD_FIGURES[key]}" if key in _DPD_FIGURES else key): value for key, value in row.items()}


def merchant_dashboard(*, merchant: Merchant, now: dt.datetime | None = None) -> dict[str, Any]:
    """The dashboard's figures for today, 7 and 30 days (Beijing days, orders by creation), and a daily series.

    The figures are the *current* state of the orders created on each day (an order created 20 days ago and
    refunded today counts as refunded on its day). One query whatever the number of orders: the daily roll-up
    (:func:`merchant_day_figures`); the windows are sums of days, in Python.

    Returns ``{"windows": {"today": {...}, "7d": {...}, "30d": {...}}, "series": [...], "today": date}``;
    each window holds counts, amounts (Decimal) and rates (percent, None without a denominator).
    """
    now = timezone.localtime(now or timezone.now())
    today = now.date()
    first_day = today - dt.timedelta(days=WINDOWS[-1][1])
    by_day = {day: _named(row) for day, row in merchant_day_figures(merchant=merchant, first_day=first_day).items()}
    empty = _named(zero_figures())

    windows: dict[str, dict[str, Any]] = {}
    for name, back in WINDOWS:
        start = today - dt.timedelta(days=back)
        w: dict[str, Any] = dict(empty)
        for day, row in by_day.items():
            if start <= day <= today:
                for key, value in row.items():
                    w[key] += value
        w["approval_rate"] = _rate(w["approved"], w["approved"] + w["declined"])
        w["charge_success_rate"] = _rate(w["charged"], w["charge_tried"])
        w["overdue_rate"] = _rate(w["overdue"], w["billed"])
        w["dpd"] = [
            {"bucket": b, "count": w[f"dpd_{b}"], "rate": _rate(w[f"dpd_{b}"], w["billed"])} for b in DPD_BUCKETS
        ]
        w["from"], w["to"] = start, today
        windows[name] = w

    series = []
    for back in range(WINDOWS[-1][1], -1, -1):
        day = today - dt.timedelta(days=back)
        row = by_day.get(day, empty)
        series.append(
            {"day": day.isoformat(), "orders": row["orders"], "gmv": str(row["gmv"]), "overdue": row["overdue"]}
        )
    return {"windows": windows, "series": series, "today": today}
