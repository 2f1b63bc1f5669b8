"""Reads of the consumer pages, each scoped to the principal (the signed-in consumer, or the public catalogue).

A consumer's rows are always reached through their own ``Consumer`` (from
``consumers.selectors.consumer_get_for_user``), never through an id alone, so another person's order,
agreement or funding source raises ``DoesNotExist`` exactly like an id that does not exist, and the
views answer 404. List selectors load what the templates show with ``select_related`` /
``prefetch_related`` so a page costs the same number of queries for 3 rows or 300.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Prefetch, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from consumers.choices import ProfileEventKind
from consumers.models import Consumer, CreditProfileEvent, LimitChange, PromiseRecord
from merchants.choices import Scenario
from merchants.models import Listing
from merchants.selectors import listings_active
from scoring.choices import Dimension
from scoring.models import AdmissionDecision
from scoring.selectors import admission_decision_explain
from scoring.services import compiled_card

from ..choices import OPEN_STATUSES, AgreementSignupStatus, OrderStatus
from ..models import (
    Agreement,
    AgreementSignup,
    BillLine,
    ChargeAttempt,
    CreditOrder,
    Dispute,
    OrderEvent,
    SandboxFundingSource,
    UsageEvent,
)

S = OrderStatus

# The three tabs of "my orders": being used now, charges to come, and finished.
ORDER_TABS: dict[str, frozenset[str]] = {
    "open": frozenset({S.CREATED, S.PENDING_CONFIRMATION, S.ACTIVE}),
    "upcoming": frozenset({S.COMPLETED, S.COLLECTING, S.OVERDUE}),
    "past": frozenset({S.DECLINED, S.EXPIRED, S.CANCELLED, S.PAID, S.PARTIALLY_REFUNDED, S.REFUNDED, S.WRITTEN_OFF}),
}
ORDER_TAB_LABELS = {
    "open": pgettext_lazy("order tab", "In use"),
    "upcoming": pgettext_lazy("order tab", "Upcoming charges"),
    "past": pgettext_lazy("order tab", "Past"),
    "all": pgettext_lazy("order tab", "All"),
}
SEARCH_MAX_LENGTH = 50
# Paid orders stay on the home page's charge timeline this long, so the consumer sees the charge happened.
RECENTLY_CHARGED = timedelta(days=30)
UPCOMING_LIMIT = 10


def _clean_search(q: str | None) -> str:
    return re.sub(r"\s+", " ", (q or "")).strip()[:SEARCH_MAX_LENGTH]


# --------------------------------------------------------------------------- catalogue (public)


def catalogue_listings(*, scenario: str = "", city: str = "", q: str = "") -> QuerySet[Listing]:
    """What anyone can order now (active listings of approved merchants), filtered by scenario, city and text.

    The text matches the listing's title and description and the merchant's display name. An unknown
    scenario filters nothing rather than failing: the filter comes from a query string.
    """
    listings = listings_active().order_by("merchant__display_name", "title", "id")
    if scenario in Scenario.values:
        listings = listings.filter(scenario=scenario)
    city = _clean_search(city)
    if city:
        listings = listings.filter(merchant__city=city)
    q = _clean_search(q)
    if q:
        listings = listings.filter(
            Q(title__icontains=q) | Q(description__icontains=q) | Q(merchant__display_name__icontains=q)
        )
    return listings


def catalogue_cities() -> list[str]:
    """The cities that have something on sale, for the city filter."""
    return sorted(
        {city for city in listings_active().order_by().values_list("merchant__city", flat=True).distinct() if city}
    )


def catalogue_listing_get(*, listing_id: object) -> Listing:
    """One listing that can be ordered now; ``Listing.DoesNotExist`` for a paused or unknown one."""
    try:
        pk = int(str(listing_id))
    except (TypeError, ValueError):
        raise Listing.DoesNotExist from None
    if not 0 < pk < 2**63:
        raise Listing.DoesNotExist
    return listings_active().get(pk=pk)


# --------------------------------------------------------------------------- hosted pages


def agreement_signup_get_by_token(*, token: str) -> AgreementSignup:
    """The sign-up link a token names (any status: the page explains a used or expired one)."""
    if not token or len(token) > 64:
        raise AgreementSignup.DoesNotExist
    return AgreementSignup.objects.select_related("merchant", "listing", "listing__merchant").get(token=token)


# --------------------------------------------------------------------------- orders


def consumer_orders(
    *, consumer: Consumer, tab: str = "all", status: str = "", scenario: str = "", q: str = ""
) -> QuerySet[CreditOrder]:
    """The consumer's orders for the list page: a tab, a status and scenario filter, and a search.

    The search matches the order's title, the merchant's name and the merchant's order number.
    """
    orders = CreditOrder.objects.filter(consumer=consumer).select_related("merchant").order_by("-created_at", "-id")
    if tab in ORDER_TABS:
        orders = orders.filter(status__in=sorted(ORDER_TABS[tab]))
    if status in S.values:
        orders = orders.filter(status=status)
    if scenario in Scenario.values:
        orders = orders.filter(scenario=scenario)
    q = _clean_search(q)
    if q:
        orders = orders.filter(
            Q(title__icontains=q) | Q(merchant__display_name__icontains=q) | Q(out_order_no__icontains=q)
        )
    return orders


def consumer_order_detail(*, consumer: Consumer, order_id: object) -> CreditOrder:
    """One of the consumer's orders with everything its page shows (events, bill, usage, attempts).

    Another consumer's order raises ``CreditOrder.DoesNotExist``, like an id that does not exist.
    """
    try:
        pk = int(str(order_id))
    except (TypeError, ValueError):
        raise CreditOrder.DoesNotExist from None
    if not 0 < pk < 2**63:
        raise CreditOrder.DoesNotExist
    return (
        CreditOrder.objects.select_related("merchant", "listing", "agreement", "decision")
        .prefetch_related(
            Prefetch("events", queryset=OrderEvent.objects.order_by("created_at", "id")),
            Prefetch("bill_lines", queryset=BillLine.objects.order_by("position", "id")),
            Prefetch("usage_events", queryset=UsageEvent.objects.order_by("occurred_at", "id")),
            Prefetch("charge_attempts", queryset=ChargeAttempt.objects.order_by("sequence")),
        )
        .get(consumer=consumer, pk=pk)
    )


def promise_record_for_order(*, consumer: Consumer, order: CreditOrder) -> PromiseRecord | None:
    """The 守约记录 of one of the consumer's orders, or None while it is open."""
    return PromiseRecord.objects.filter(consumer=consumer, order_id=order.pk).first()


def order_last_dispute(*, consumer: Consumer, order: CreditOrder) -> Dispute | None:
    """The consumer's most recent dispute of the order, whatever its state (the page shows how it ended)."""
    return Dispute.objects.filter(consumer=consumer, order=order).order_by("-created_at", "-id").first()


@dataclass(frozen=True)
class ChargeStage:
    """Where an order's one charge stands, as the home page's timeline shows it."""

    code: str
    label: str
    css: str


CHARGE_STAGES = {
    "pending": (pgettext_lazy("charge timeline", "To be charged"), "secondary"),
    "charging": (pgettext_lazy("charge timeline", "Charging"), "info"),
    "charged": (pgettext_lazy("charge timeline", "Charged"), "success"),
    "failed": (pgettext_lazy("charge timeline", "Charge failed"), "warning"),
    "overdue": (pgettext_lazy("charge timeline", "Overdue"), "danger"),
}


def charge_stage(order: CreditOrder) -> ChargeStage:
    """待扣款 / 扣款中 / 已扣款 / 扣款失败 / 已逾期 for one order (from its status and in-flight flag)."""
    if order.status == S.OVERDUE:
        code = "overdue"
    elif order.charge_in_flight:
        code = "charging"
    elif order.status == S.COLLECTING:
        code = "failed"
    elif order.status in {S.PAID, S.PARTIALLY_REFUNDED, S.REFUNDED}:
        code = "charged"
    else:
        code = "pending"
    label, css = CHARGE_STAGES[code]
    return ChargeStage(code=code, label=str(label), css=css)


def upcoming_charges(*, consumer: Consumer, now: datetime | None = None) -> list[CreditOrder]:
    """The home page's charge timeline: every unpaid bill, then charges of the last 30 days, soonest first.

    Each order gets ``.stage`` (:func:`charge_stage`) and ``.when`` (its due time, or when it was paid).
    """
    now = now or timezone.now()
    orders = list(
        CreditOrder.objects.filter(consumer=consumer)
        .filter(
            Q(status__in=sorted(ORDER_TABS["upcoming"]))
            | Q(status__in=[S.PAID, S.PARTIALLY_REFUNDED, S.REFUNDED], paid_at__gte=now - RECENTLY_CHARGED)
        )
        .select_related("merchant")
        .order_by("due_at", "id")[: UPCOMING_LIMIT * 2]
    )
    for order in orders:
        order.stage = charge_stage(order)  # type: ignore[attr-defined]
        order.when = order.paid_at if order.stage.code == "charged" else order.due_at  # type: ignore[attr-defined]
    # Unpaid first (soonest due first), then what was charged, most recent first.
    unpaid = [o for o in orders if o.stage.code != "charged"]  # type: ignore[attr-defined]
    charged = sorted(
        (o for o in orders if o.stage.code == "charged"),  # type: ignore[attr-defined]
        key=lambda o: o.paid_at or now,
        reverse=True,
    )
    return (unpaid + charged)[:UPCOMING_LIMIT]


def consumer_open_order_count(*, consumer: Consumer) -> int:
    return CreditOrder.objects.filter(consumer=consumer, status__in=sorted(OPEN_STATUSES)).count()


# --------------------------------------------------------------------------- agreements


def consumer_agreements(*, consumer: Consumer) -> QuerySet[Agreement]:
    """Every standing agreement of the consumer (valid first), with the count of its open orders."""
    return (
        Agreement.objects.filter(consumer=consumer)
        .select_related("merchant", "listing")
        .annotate(open_orders=Count("credit_orders", filter=Q(credit_orders__status__in=sorted(OPEN_STATUSES))))
        .order_by("status", "-signed_at", "-id")
    )


def consumer_agreement_get(*, consumer: Consumer, agreement_id: object) -> Agreement:
    """One of the consumer's agreements; ``Agreement.DoesNotExist`` for anyone else's."""
    try:
        pk = int(str(agreement_id))
    except (TypeError, ValueError):
        raise Agreement.DoesNotExist from None
    if not 0 < pk < 2**63:
        raise Agreement.DoesNotExist
    return consumer_agreements(consumer=consumer).get(pk=pk)


def agreement_open_orders(*, agreement: Agreement) -> QuerySet[CreditOrder]:
    """The orders that keep an agreement from being closed (shown with the refusal)."""
    return agreement.credit_orders.filter(status__in=sorted(OPEN_STATUSES)).order_by("-created_at", "-id")


# --------------------------------------------------------------------------- score and limit history


@dataclass(frozen=True)
class HistoryRow:
    """One change of the consumer's score, limit, pause or spend cap, with its reason."""

    at: datetime
    kind: str
    label: str
    before: str
    after: str
    reason: str


def _limit_reason_text(change: LimitChange) -> str:
    return change.reason or str(change.get_reason_code_display())


def score_history(*, consumer: Consumer) -> dict[str, Any]:
    """The consumer's score and limit over time (for the chart) and every change with its reason (the table).

    Sources: :class:`LimitChange` rows (limit before/after and why) and :class:`CreditProfileEvent`
    rows (score changes, pauses, spend cap). The chart's series start from the earliest known value.
    """
    profile = consumer.credit_profile
    limit_changes = list(LimitChange.objects.filter(profile=profile).order_by("created_at", "id"))
    events = list(CreditProfileEvent.objects.filter(profile=profile).order_by("created_at", "id"))
    rows: list[HistoryRow] = [
        HistoryRow(
            at=c.created_at,
            kind="limit",
            label=str(_("Limit")),
            before=str(c.before_amount),
            after=str(c.after_amount),
            reason=_limit_reason_text(c),
        )
        for c in limit_changes
    ]
    rows += [
        HistoryRow(
            at=e.created_at,
            kind=e.kind,
            label=str(e.get_kind_display()),
            before=e.before,
            after=e.after,
            reason=e.reason,
        )
        for e in events
    ]
    rows.sort(key=lambda r: r.at, reverse=True)

    score_points: list[dict[str, Any]] = []
    score_events = [e for e in events if e.kind == ProfileEventKind.SCORE_CHANGED]
    start = consumer.created_at
    if score_events and score_events[0].before.isdigit():
        score_points.append({"x": start.isoformat(), "y": int(score_events[0].before)})
    elif not score_events:
        score_points.append({"x": start.isoformat(), "y": profile.score})
    score_points += [{"x": e.created_at.isoformat(), "y": int(e.after)} for e in score_events if e.after.isdigit()]
    score_points.append({"x": timezone.now().isoformat(), "y": profile.score})
    limit_points = [{"x": c.created_at.isoformat(), "y": str(c.after_amount)} for c in limit_changes]
    limit_points.append({"x": timezone.now().isoformat(), "y": str(profile.credit_limit_amount)})
    return {"rows": rows, "score_points": score_points, "limit_points": limit_points}


# --------------------------------------------------------------------------- payment methods


def consumer_funding_sources(*, consumer: Consumer) -> QuerySet[SandboxFundingSource]:
    """The consumer's sandbox cards and wallets, default first."""
    return SandboxFundingSource.objects.filter(consumer=consumer).order_by("-is_default", "id")


def consumer_funding_source_get(*, consumer: Consumer, source_id: object) -> SandboxFundingSource:
    """One of the consumer's funding sources; ``DoesNotExist`` for anyone else's."""
    try:
        pk = int(str(source_id))
    except (TypeError, ValueError):
        raise SandboxFundingSource.DoesNotExist from None
    if not 0 < pk < 2**63:
        raise SandboxFundingSource.DoesNotExist
    return consumer_funding_sources(consumer=consumer).get(pk=pk)


# --------------------------------------------------------------------------- data export


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def consumer_data_export(*, consumer: Consumer) -> dict[str, Any]:
    """Everything the platform keeps about the consumer, as JSON-ready data (their copy, PIPL art. 45).

    The resident ID number was never stored in clear: the export has its masked form, as every page.
    """
    profile = consumer.credit_profile
    orders = (
        CreditOrder.objects.filter(consumer=consumer)
        .select_related("merchant")
        .prefetch_related("bill_lines", "usage_events", "events", "charge_attempts")
        .order_by("created_at", "id")
    )
    return {
        "exported_at": timezone.now().isoformat(),
        "account": {
            "phone": consumer.phone,
            "city": consumer.city,
            "real_name": consumer.real_name,
            "id_number": consumer.id_number_masked,
            "verified_at": _time(consumer.verified_at),
            "joined_at": _time(consumer.created_at),
        },
        "credit_profile": {
            "score": profile.score,
            "band": profile.band,
            "credit_limit": _money(profile.credit_limit_amount),
            "held": _money(profile.open_exposure_amount),
            "available": _money(profile.credit_limit_amount - profile.open_exposure_amount),
            "spend_cap": _money(profile.spend_cap_amount),
            "paused": profile.is_paused,
            "paused_reason": profile.paused_reason,
        },
        "limit_changes": [
            {
                "at": _time(c.created_at),
                "reason_code": c.reason_code,
                "reason": c.reason,
                "before": _money(c.before_amount),
                "after": _money(c.after_amount),
            }
            for c in LimitChange.objects.filter(profile=profile).order_by("created_at", "id")
        ],
        "profile_events": [
            {"at": _time(e.created_at), "kind": e.kind, "before": e.before, "after": e.after, "reason": e.reason}
            for e in CreditProfileEvent.objects.filter(profile=profile).order_by("created_at", "id")
        ],
        "promise_records": [
            {
                "order_id": r.order_id,
                "merchant": r.merchant.display_name,
                "outcome": r.outcome,
                "amount": _money(r.amount),
                "recorded_at": _time(r.recorded_at),
            }
            for r in PromiseRecord.objects.filter(consumer=consumer).select_related("merchant").order_by("recorded_at")
        ],
        "agreements": [
            {
                "id": a.pk,
                "merchant": a.merchant.display_name,
                "service": a.listing.title,
                "status": a.status,
                "signed_at": _time(a.signed_at),
                "closed_at": _time(a.closed_at),
            }
            for a in Agreement.objects.filter(consumer=consumer).select_related("merchant", "listing")
        ],
        "orders": [
            {
                "id": o.pk,
                "merchant": o.merchant.display_name,
                "merchant_order_no": o.out_order_no,
                "title": o.title,
                "status": o.status,
                "max_amount": _money(o.max_amount),
                "amount_due": _money(o.amount_due),
                "created_at": _time(o.created_at),
                "confirmed_at": _time(o.confirmed_at),
                "completed_at": _time(o.completed_at),
                "due_at": _time(o.due_at),
                "paid_at": _time(o.paid_at),
                "bill_lines": [
                    {
                        "name": line.name,
                        "quantity": str(line.quantity),
                        "unit": line.unit,
                        "unit_price": str(line.unit_price),
                        "amount": _money(line.amount),
                        "discount": line.is_discount,
                    }
                    for line in o.bill_lines.all()
                ],
                "usage": [
                    {"quantity": str(u.quantity), "occurred_at": _time(u.occurred_at)} for u in o.usage_events.all()
                ],
                "events": [
                    {"at": _time(e.created_at), "from": e.from_status, "to": e.to_status, "reason": e.reason}
                    for e in o.events.all()
                ],
                "charge_attempts": [
                    {
                        "at": _time(a.requested_at),
                        "amount": _money(a.amount),
                        "status": a.status,
                        "decline_code": a.decline_code,
                    }
                    for a in o.charge_attempts.all()
                ],
            }
            for o in orders
        ],
        "payment_methods": [
            {"label": s.label, "balance": _money(s.balance_amount), "default": s.is_default, "frozen": s.frozen}
            for s in SandboxFundingSource.objects.filter(consumer=consumer).order_by("id")
        ],
    }


def signup_is_pending(signup: AgreementSignup, now: datetime | None = None) -> bool:
    return signup.status == AgreementSignupStatus.PENDING and signup.expires_at > (now or timezone.now())


def order_decline_reasons(*, order: CreditOrder) -> list[dict[str, Any]]:
    """Why an order was declined: the reasons its ``declined`` event kept (``{code, message, …}``).

    The event has them whichever way the decline came (the assessment, or a limit taken by another
    order in the meantime); the decision's own reasons are the fallback.
    """
    event = order.events.filter(to_status=S.DECLINED).order_by("-id").first()
    reasons = list((event.data or {}).get("reasons", [])) if event is not None else []
    if not reasons and order.decision is not None:
        reasons = list(order.decision.reasons or [])
    return reasons


def score_breakdown(*, consumer: Consumer) -> dict[str, Any] | None:
    """The five-dimension breakdown of the consumer's score, from their latest assessment.

    Every admission decision keeps the scorecard's points by dimension and its top reasons
    (``scoring.selectors.admission_decision_explain``); the latest one is the most recent explanation
    the platform has. Each dimension is placed on its own scale (worst to best points the scorecard
    can give it) so a bar can show it. ``None`` before the consumer's first assessment.
    """
    decision = (
        AdmissionDecision.objects.filter(consumer=consumer, scorecard__isnull=False)
        .exclude(sub_scores={})
        .order_by("-created_at", "-id")
        .first()
    )
    if decision is None:
        return None
    explained = admission_decision_explain(decision=decision)
    ranges = compiled_card(decision.scorecard_id).dimension_ranges()
    dimensions = []
    for key, label in Dimension.choices:
        if key not in explained["sub_scores"]:
            continue
        points = int(explained["sub_scores"][key])
        low, high = ranges.get(key, (0, 0))
        percent = 100 if high <= low else round(max(0, min(1, (points - low) / (high - low))) * 100)
        dimensions.append({"key": key, "label": label, "points": points, "percent": percent})
    return {"as_of": decision.created_at, "dimensions": dimensions, "reasons": explained["score_reasons"]}
