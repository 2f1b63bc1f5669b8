"""Does it work? On-time rates of orders that received the optional pre-charge reminders vs the control group.

Population: orders of scenarios whose policy allows a control group, due within the period and already past
their first charge (status paid, refunded, collecting, overdue or written off). *Reminded*: an optional
(extra-lead) ``charge_upcoming`` notification was written for the order. *Control*: the order has a
:class:`ReminderHoldout` row (the reminder was withheld on purpose). Both groups got the mandatory notice.
*On time*: paid without ever entering collection (the first charge, or an early pay-now, succeeded).

With the rewards programme installed (``consumers.RewardAccount``, ``LevelChange``), the same rates are given
by the level the consumer had when the order was completed, for every order due in the period. The
difference of two rates comes with a 95 % confidence interval (normal approximation), so a small sample says
so instead of claiming an effect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from django.apps import apps
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from bnpl.choices import OrderStatus
from bnpl.models import CreditOrder
from bnpl.policies import SCENARIO_POLICIES

from .models import Notification, ReminderHoldout

PAID_STATUSES = [OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED]
SETTLED_OR_LATE = [*PAID_STATUSES, OrderStatus.COLLECTING, OrderStatus.OVERDUE, OrderStatus.WRITTEN_OFF]
ON_TIME = Q(status__in=PAID_STATUSES, collecting_since__isnull=True)


@dataclass(frozen=True)
class Rate:
    label: str
    orders: int
    on_time: int

    @property
    def rate(self) -> float | None:
        return self.on_time / self.orders if self.orders else None


@dataclass
class ReminderReport:
    since: datetime
    until: datetime
    reminded: Rate
    control: Rate
    difference: float | None  # reminded − control, as a share
    ci95: tuple[float, float] | None
    by_level: list[Rate] = field(default_factory=list)
    levels_available: bool = False

    def lines(self) -> list[str]:
        """The report as plain text lines (the management command prints them)."""

        def pct(value: float | None) -> str:
            return "—" if value is None else f"{value * 100:.1f} %"

        out = [
            f"Orders due {timezone.localtime(self.since):%Y-%m-%d} … {timezone.localtime(self.until):%Y-%m-%d}",
            f"{'group':<24}{'orders':>8}{'on time':>9}{'rate':>10}",
        ]
        for row in (self.reminded, self.control):
            out.append(f"{row.label:<24}{row.orders:>8}{row.on_time:>9}{pct(row.rate):>10}")
        if self.difference is not None and self.ci95 is not None:
            low, high = self.ci95
            out.append(
                f"difference (reminded − control): {self.difference * 100:+.1f} points, "
                f"95 % CI {low * 100:+.1f} … {high * 100:+.1f} points"
            )
        else:
            out.append("difference: — (a group is empty; is BNPL_REMINDER_CONTROL_SHARE above 0?)")
        if self.levels_available:
            out.append("on-time rate by consumer level (all orders due in the period):")
            for row in self.by_level:
                out.append(f"{row.label:<24}{row.orders:>8}{row.on_time:>9}{pct(row.rate):>10}")
        else:
            out.append("levels: the rewards programme is not installed; skipped")
        return out


def _reminded_condition() -> Q:
    condition = Q(pk__in=[])
    for scenario, policy in SCENARIO_POLICIES.items():
        if not policy.reminder_control_allowed:
            continue
        for lead in policy.extra_reminder_leads:
            hours = int(lead.total_seconds() // 3600)
            condition |= Q(scenario=scenario) & Exists(
                Notification.objects.filter(
                    order=OuterRef("pk"), kind="charge_upcoming", dedupe_key__contains=f":{hours}h:"
                )
            )
    return condition


def _rate(label: str, queryset: QuerySet[CreditOrder]) -> Rate:
    totals = queryset.aggregate(orders=Count("id"), on_time=Count("id", filter=ON_TIME))
    return Rate(label=label, orders=totals["orders"], on_time=totals["on_time"])


def reminder_report(*, since: datetime, until: datetime) -> ReminderReport:
    """The figures for orders due between ``since`` and ``until`` (and before now)."""
    now = timezone.now()
    due = CreditOrder.objects.filter(due_at__gte=since, due_at__lt=min(until, now), status__in=SETTLED_OR_LATE)
    eligible = due.filter(scenario__in=[s for s, p in SCENARIO_POLICIES.items() if p.reminder_control_allowed])
    control_q = Exists(ReminderHoldout.objects.filter(order=OuterRef("pk")))
    reminded = _rate("reminded", eligible.filter(_reminded_condition()).exclude(control_q))
    control = _rate("control (held out)", eligible.filter(control_q))
    difference = ci95 = None
    if reminded.orders and control.orders:
        p1, p2 = reminded.rate or 0.0, control.rate or 0.0
        difference = p1 - p2
        se = math.sqrt(p1 * (1 - p1) / reminded.orders + p2 * (1 - p2) / control.orders)
        ci95 = (max(-1.0, difference - 1.96 * se), min(1.0, difference + 1.96 * se))
    report = ReminderReport(
        since=since, until=until, reminded=reminded, control=control, difference=difference, ci95=ci95
    )
    try:
        account_model = apps.get_model("consumers", "RewardAccount")
        change_model = apps.get_model("consumers", "LevelChange")
    except LookupError:
        return report
    report.levels_available = True
    level_field = account_model._meta.get_field("level")
    # The level the consumer had when the order was completed (the last change before it, else the starting
    # level), not today's: a level earned by paying this very order must not explain its being paid.
    level_then = Coalesce(
        Subquery(
            change_model.objects.filter(
                account__consumer=OuterRef("consumer"), created_at__lte=OuterRef("completed_at")
            )
            .order_by("-created_at", "-id")
            .values("after")[:1]
        ),
        Value(level_field.default),
    )
    rows = {
        row["level_then"]: row
        for row in due.annotate(level_then=level_then)
        .values("level_then")
        .annotate(orders=Count("id"), on_time=Count("id", filter=ON_TIME))
    }
    for value, label in level_field.choices or []:
        row = rows.get(value)
        if row:
            report.by_level.append(Rate(label=str(label), orders=row["orders"], on_time=row["on_time"]))
    return report
    report.levels_available = True
    level_field = account_model._meta.get_field("level")
    rows = {
        row["consumer__reward_account__level"]: row
        for row in due.values("consumer__reward_account__level").annotate(
            orders=Count("id"), on_time=Count("id", filter=ON_TIME)
        )
    }
    labels = dict(level_field.choices or [])
    for value, label in [*labels.items(), (None, "(no rewards account)")]:
        row = rows.get(value)
        if row:
            report.by_level.append(Rate(label=str(label), orders=row["orders"], on_time=row["on_time"]))
    return report
