"""Selectors of the staff admin's landing page: what needs attention today, in a handful of aggregate queries.

The page (``StaffAdminSite.index``, template ``admin/bnpl/dashboard.html``) shows five panels, each only to staff
who may view the model behind it (bnpl/staff_groups.py), so a support agent does not see charge totals and the
queries of a panel nobody may see are not run:

- today's charge and reconcile runs: runs per kind and status with their counters and amounts, and the latest run;
- today's failed charge attempts (declined, outcome unknown, not found at the provider), per outcome;
- overdue orders per delinquency bucket (M0 … M3+), count and amount due;
- merchant applications awaiting review, with the oldest submission;
- disputes whose merchant response deadline falls in the next 48 hours or has passed, and those awaiting a
  decision, with the soonest few.

Each figure links to the admin list that shows the same rows, filtered the same way (the dispute deadline
filter of the dispute list uses :func:`dispute_deadline_q` from here, so the count and the list agree).
"Today" is the calendar day in ``TIME_ZONE`` (Asia/Shanghai), as staff read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, DecimalField, Min, Q, Sum, Value
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from bnpl.choices import OrderStatus
from bnpl.models import ChargeAttempt, ChargeRun, CreditOrder, Dispute
from bnpl.models.charging import AttemptStatus, DpdBucket
from bnpl.models.settlement import DisputeStatus
from bnpl.money import ZERO
from merchants.choices import MerchantStatus
from merchants.models import Merchant

# Disputes whose response deadline is this close are shown as "due soon" (the 48 hours).
DISPUTE_DEADLINE_WINDOW = timedelta(hours=48)
# How many of the soonest disputes are listed by name on the page.
DISPUTES_LISTED = 5
FAILED_ATTEMPT_STATUSES = (AttemptStatus.DECLINED, AttemptStatus.UNKNOWN, AttemptStatus.NOT_FOUND)
OVERDUE_BUCKETS = (DpdBucket.M0, DpdBucket.M1, DpdBucket.M2, DpdBucket.M3_PLUS)
DEADLINE_DUE_SOON = "48h"
DEADLINE_PAST = "past"

_MONEY = DecimalField(max_digits=16, decimal_places=2)


def _money_sum(expression: str, **kwargs: Any) -> Coalesce:
    return Coalesce(Sum(expression, **kwargs), Value(ZERO), output_field=_MONEY)


def _changelist(model: type, **params: object) -> str:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return f"{url}?{urlencode(params)}" if params else url


def _day_params(field_name: str, day: date) -> dict[str, int]:
    """The changelist's date-hierarchy parameters for one day (``started_at__year=…&…__month=…&…__day=…``)."""
    return {f"{field_name}__year": day.year, f"{field_name}__month": day.month, f"{field_name}__day": day.day}


def day_start(now: datetime) -> datetime:
    """Midnight of ``now``'s calendar day in the current time zone, as an aware datetime."""
    return timezone.make_aware(datetime.combine(timezone.localdate(now), time.min))


# --------------------------------------------------------------------------- charge runs


@dataclass(frozen=True)
class ChargeRunGroup:
    """Today's runs of one kind in one status, with their counters summed."""

    kind: str
    kind_label: str
    status: str
    status_label: str
    runs: int
    claimed: int
    succeeded: int
    declined: int
    unknown: int
    errors: int
    succeeded_amount: Decimal
    declined_amount: Decimal
    unknown_amount: Decimal


@dataclass(frozen=True)
class ChargeRunsToday:
    groups: list[ChargeRunGroup]
    latest: ChargeRun | None
    url: str

    @property
    def runs(self) -> int:
        return sum(g.runs for g in self.groups)

    @property
    def succeeded_amount(self) -> Decimal:
        return sum((g.succeeded_amount for g in self.groups), ZERO)

    @property
    def failed_runs(self) -> int:
        return sum(g.runs for g in self.groups if g.status == "failed")


def charge_runs_today(*, now: datetime) -> ChargeRunsToday:
    """Today's runs per (kind, status) in one aggregate (index ``charge_run_started_idx``), and the latest run."""
    kinds = dict(ChargeRun._meta.get_field("kind").flatchoices)
    statuses = dict(ChargeRun._meta.get_field("status").flatchoices)
    rows = (
        ChargeRun.objects.filter(started_at__gte=day_start(now))
        .values("kind", "status")
        .annotate(
            runs=Count("id"),
            claimed_sum=Coalesce(Sum("claimed"), 0),
            succeeded_sum=Coalesce(Sum("succeeded"), 0),
            declined_sum=Coalesce(Sum("declined"), 0),
            unknown_sum=Coalesce(Sum("unknown"), 0),
            errors_sum=Coalesce(Sum("errors"), 0),
            succeeded_amount_sum=_money_sum("succeeded_amount"),
            declined_amount_sum=_money_sum("declined_amount"),
            unknown_amount_sum=_money_sum("unknown_amount"),
        )
        .order_by("kind", "status")
    )
    groups = [
        ChargeRunGroup(
            kind=row["kind"],
            kind_label=str(kinds.get(row["kind"], row["kind"])),
            status=row["status"],
            status_label=str(statuses.get(row["status"], row["status"])),
            runs=row["runs"],
            claimed=row["claimed_sum"],
            succeeded=row["succeeded_sum"],
            declined=row["declined_sum"],
            unknown=row["unknown_sum"],
            errors=row["errors_sum"],
            succeeded_amount=row["succeeded_amount_sum"],
            declined_amount=row["declined_amount_sum"],
            unknown_amount=row["unknown_amount_sum"],
        )
        for row in rows
    ]
    latest = ChargeRun.objects.order_by("-started_at", "-id").first()
    return ChargeRunsToday(
        groups=groups,
        latest=latest,
        url=_changelist(ChargeRun, **_day_params("started_at", timezone.localdate(now))),
    )


# --------------------------------------------------------------------------- failed attempts


@dataclass(frozen=True)
class FailedAttempts:
    """Today's attempts with one failed outcome."""

    status: str
    label: str
    attempts: int
    amount: Decimal
    url: str


def charge_failures_today(*, now: datetime) -> list[FailedAttempts]:
    """Today's declined / unknown / not-found attempts per outcome, in one aggregate (``charge_attempt_failed_idx``).

    Every outcome is listed, with zero when there was none, so the panel always reads the same way.
    """
    counted = {
        row["status"]: row
        for row in ChargeAttempt.objects.filter(status__in=FAILED_ATTEMPT_STATUSES, requested_at__gte=day_start(now))
        .values("status")
        .annotate(attempts=Count("id"), amount_sum=_money_sum("amount"))
        .order_by()
    }
    day = _day_params("requested_at", timezone.localdate(now))
    return [
        FailedAttempts(
            status=status.value,
            label=str(status.label),
            attempts=counted.get(status, {}).get("attempts", 0),
            amount=counted.get(status, {}).get("amount_sum", ZERO),
            url=_changelist(ChargeAttempt, status__exact=status.value, **day),
        )
        for status in FAILED_ATTEMPT_STATUSES
    ]


# --------------------------------------------------------------------------- overdue


@dataclass(frozen=True)
class OverdueBucket:
    bucket: str
    label: str
    orders: int
    amount: Decimal
    url: str


@dataclass(frozen=True)
class OverdueSummary:
    buckets: list[OverdueBucket]
    url: str

    @property
    def orders(self) -> int:
        return sum(b.orders for b in self.buckets)

    @property
    def amount(self) -> Decimal:
        return sum((b.amount for b in self.buckets), ZERO)


def overdue_by_bucket() -> OverdueSummary:
    """Overdue orders per DPD bucket (count and amount due) in one aggregate over the overdue orders only.

    ``dpd_bucket`` is refreshed by the daily overdue job (bnpl/overdue.py); the figures are as of its last run.
    """
    counted = {
        row["dpd_bucket"]: row
        for row in CreditOrder.objects.filter(status=OrderStatus.OVERDUE)
        .values("dpd_bucket")
        .annotate(orders=Count("id"), amount_sum=_money_sum("amount_due"))
        .order_by()
    }
    buckets = [
        OverdueBucket(
            bucket=bucket.value,
            label=str(bucket.label),
            orders=counted.get(bucket, {}).get("orders", 0),
            amount=counted.get(bucket, {}).get("amount_sum", ZERO),
            url=_changelist(CreditOrder, status__exact=OrderStatus.OVERDUE.value, dpd_bucket__exact=bucket.value),
        )
        for bucket in OVERDUE_BUCKETS
    ]
    return OverdueSummary(buckets=buckets, url=_changelist(CreditOrder, status__exact=OrderStatus.OVERDUE.value))


# --------------------------------------------------------------------------- merchants


@dataclass(frozen=True)
class ReviewQueue:
    merchants: int
    oldest_submitted_at: datetime | None
    url: str


def merchants_awaiting_review() -> ReviewQueue:
    """Submitted applications (count and the oldest submission) in one aggregate."""
    row = Merchant.objects.filter(status=MerchantStatus.SUBMITTED).aggregate(
        merchants=Count("id"), oldest=Min("submitted_at")
    )
    return ReviewQueue(
        merchants=row["merchants"],
        oldest_submitted_at=row["oldest"],
        url=_changelist(Merchant, status__exact=MerchantStatus.SUBMITTED.value),
    )


# --------------------------------------------------------------------------- disputes


def dispute_deadline_q(which: str, *, now: datetime) -> Q:
    """Open disputes (the merchant has not answered) whose response deadline is soon (``"48h"``) or past (``"past"``).

    Shared by the dashboard's counts and the dispute list's "Response deadline" filter.
    """
    if which == DEADLINE_DUE_SOON:
        return Q(status=DisputeStatus.OPEN, respond_by__gte=now, respond_by__lt=now + DISPUTE_DEADLINE_WINDOW)
    if which == DEADLINE_PAST:
        return Q(status=DisputeStatus.OPEN, respond_by__lt=now)
    raise ValueError(f"Unknown deadline filter: {which!r}")


@dataclass(frozen=True)
class DisputeDeadlines:
    due_soon: int
    past_deadline: int
    awaiting_decision: int
    soonest: list[Dispute] = field(default_factory=list)
    due_soon_url: str = ""
    past_deadline_url: str = ""
    awaiting_decision_url: str = ""


def disputes_near_deadline(*, now: datetime) -> DisputeDeadlines:
    """Counts of open disputes due within 48 h, past their deadline, and answered awaiting a decision (one
    aggregate), and the soonest few due or past (one query)."""
    counts = Dispute.objects.aggregate(
        due_soon=Count("id", filter=dispute_deadline_q(DEADLINE_DUE_SOON, now=now)),
        past_deadline=Count("id", filter=dispute_deadline_q(DEADLINE_PAST, now=now)),
        awaiting_decision=Count("id", filter=Q(status=DisputeStatus.MERCHANT_RESPONDED)),
    )
    soonest = list(
        Dispute.objects.filter(status=DisputeStatus.OPEN, respond_by__lt=now + DISPUTE_DEADLINE_WINDOW)
        .select_related("order", "merchant")
        .order_by("respond_by", "id")[:DISPUTES_LISTED]
    )
    return DisputeDeadlines(
        **counts,
        soonest=soonest,
        due_soon_url=_changelist(Dispute, deadline=DEADLINE_DUE_SOON),
        past_deadline_url=_changelist(Dispute, deadline=DEADLINE_PAST),
        awaiting_decision_url=_changelist(Dispute, status__exact=DisputeStatus.MERCHANT_RESPONDED.value),
    )


# --------------------------------------------------------------------------- the page


def dashboard_for(user: AbstractBaseUser | AnonymousUser, *, now: datetime | None = None) -> dict[str, object]:
    """The panels ``user`` may see (view permission on the panel's model), keyed by panel name.

    A panel the user may not see is absent, and its queries are not run.
    """
    now = now or timezone.now()
    panels: dict[str, object] = {}
    if _may_view(user, ChargeRun):
        panels["charge_runs"] = charge_runs_today(now=now)
    if _may_view(user, ChargeAttempt):
        panels["charge_failures"] = charge_failures_today(now=now)
    if _may_view(user, CreditOrder):
        panels["overdue"] = overdue_by_bucket()
    if _may_view(user, Merchant):
        panels["review_queue"] = merchants_awaiting_review()
    if _may_view(user, Dispute):
        panels["disputes"] = disputes_near_deadline(now=now)
    return panels


def _may_view(user: AbstractBaseUser | AnonymousUser, model: type) -> bool:
    """The admin's own rule (``ModelAdmin.has_view_permission``): the view or the change permission."""
    opts = model._meta
    return user.has_perm(f"{opts.app_label}.view_{opts.model_name}") or user.has_perm(
        f"{opts.app_label}.change_{opts.model_name}"
    )
