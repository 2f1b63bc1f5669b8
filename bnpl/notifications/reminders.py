"""The reminder sweeps (事中守约提醒): find what is due from the database and notify, once.

Every sweep selects the rows whose moment has come *and* whose dedupe key has no notification yet (an
``EXISTS`` on the unique key, in SQL), so a run that is lost heals on the next one, and a run delivered twice,
or two workers at once, write each notification once (the unique constraint settles a race). A failure to
notify one row is logged and counted; it never stops the sweep or touches the order.

Sweeps, the moment each looks for, the kind it writes and the dedupe key:

- ``sweep_order_events``: an order event within ``BNPL_NOTIFY_EVENT_LOOKBACK`` (→ active, → completed, → paid,
  completed → collecting): order_confirmed, order_completed, charge_succeeded, charge_failed;
  ``<kind>:order:<id>``.
- ``sweep_pre_charge``: ``due_at − lead`` for each lead of the scenario policy: charge_upcoming;
  ``charge_upcoming:order:<id>:<lead hours>h:<due epoch>``.
- ``sweep_overdue``: ``due_at + N days``, N in 1, 3, 7, 15, 30, while unpaid: payment_overdue;
  ``payment_overdue:order:<id>:d<N>``.
- ``sweep_account_events``: a pause or a lifted pause: account_paused, account_restored; ``<kind>:event:<id>``.
- ``sweep_agreements``: an agreement signed, before its first use: agreement_first_use;
  ``agreement_first_use:agreement:<id>``.
- ``send_merchant_digests`` (daily): merchant_digest; ``merchant_digest:member:<id>:<day>``.

The SQL fragments below are built from constants of this module (table and column names), never from input;
values go in as parameters.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Exists, OuterRef, QuerySet
from django.db.models.expressions import RawSQL
from django.urls import reverse
from django.utils import timezone

from bnpl.choices import AgreementStatus, OrderStatus
from bnpl.models import Agreement, CreditOrder, Dispute, OrderEvent
from bnpl.models.settlement import DISPUTE_ACTIVE
from bnpl.policies import SCENARIO_POLICIES, policy_for
from consumers.choices import ProfileEventKind
from consumers.models import CreditProfileEvent
from merchants.models import MerchantMember

from .models import Notification, ReminderHoldout
from .services import NotifyRequest, notify_many

logger = logging.getLogger(__name__)

BEIJING = ZoneInfo("Asia/Shanghai")
OVERDUE_STEPS_DAYS = (1, 3, 7, 15, 30)
# An optional closer reminder waits until the mandatory notice is at least this old (no two messages at once).
EXTRA_REMINDER_MIN_GAP = timedelta(hours=12)
SWEEP_LIMIT = 1000


def site_url(path: str) -> str:
    return settings.SITE_URL.rstrip("/") + path


def in_control_group(order_id: int, *, share: float | None = None) -> bool:
    """Whether ``order_id`` falls in the reminder control group: a stable hash of the id below the share.

    Deterministic (the same order always lands in the same group, on every worker), independent of
    anything about the consumer, and 0 % by default (``BNPL_REMINDER_CONTROL_SHARE``).
    """
    share = settings.BNPL_REMINDER_CONTROL_SHARE if share is None else share
    if share <= 0:
        return False
    digest = hashlib.sha256(f"{settings.BNPL_REMINDER_CONTROL_SALT}:{order_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def _key(prefix: str, column: str, suffix: str = "") -> RawSQL:
    """The dedupe key of each row, in SQL, to test with EXISTS against the unique index."""
    return RawSQL(f"%s || ({column})::text || %s", [prefix, suffix])  # noqa: S611 - constant column


def _not_notified(queryset: QuerySet, key: RawSQL) -> QuerySet:
    return queryset.annotate(dedupe=key).exclude(Exists(Notification.objects.filter(dedupe_key=OuterRef("dedupe"))))


def _due_rows(queryset: QuerySet, *, related: tuple[str, ...], order_by: tuple[str, ...], limit: int) -> list[Any]:
    """The rows of ``queryset`` (up to ``limit``, in ``order_by``) with their ``related`` rows, in two steps.

    The ids first, from a narrow query (no joins but the filters'): most runs find nothing due, and the
    wide join of orders, merchants, consumers and users costs three times as much to plan and run for
    nothing (measured on a simulated history: 1.5 against 5 ms). Only when ids are found are their rows read,
    by primary key. A row notified by another worker in between is left out by the dedupe key as before.
    """
    ids = list(queryset.order_by(*order_by).values_list("pk", flat=True)[:limit])
    if not ids:
        return []
    return list(queryset.model.objects.filter(pk__in=ids).select_related(*related).order_by(*order_by))


def _run(
    rows: Iterable[Any],
    request_for: Callable[[Any], NotifyRequest | None],
    counts: Counter,
    name: str,
    *,
    now: datetime,
) -> None:
    """Notify for each row what ``request_for`` asks (None: nothing to send), all rows in one batch.

    One batch (:func:`~bnpl.notifications.services.notify_many`) instead of a notify per row: a sweep that
    finds hundreds of rows writes them in a few statements. A row that fails — building its request, or its
    template — is logged and counted, and the others are still written.
    """
    requests: list[tuple[Any, NotifyRequest]] = []
    for row in rows:
        try:
            request = request_for(row)
        except Exception:
            # Loud in the logs, but one broken row must not starve every other reminder of the sweep.
            logger.exception("Reminder %s for %r failed", name, row)
            counts["errors"] += 1
            continue
        if request is not None:
            requests.append((row, request))
    if not requests:
        return
    outcomes = notify_many([request for _row, request in requests], now=now)
    for (row, _request), outcome in zip(requests, outcomes, strict=True):
        if isinstance(outcome, Exception):
            logger.error("Reminder %s for %r failed", name, row, exc_info=outcome)
            counts["errors"] += 1
        elif outcome is not None:
            counts[name] += 1


def _order_data(order: CreditOrder, **extra: Any) -> dict[str, Any]:
    return {
        "merchant": order.merchant.display_name,
        "title": order.title,
        "order_no": order.out_order_no,
        "url": site_url(reverse("me:order", args=[order.pk])),
        **extra,
    }


# ------------------------------------------------------------------------------------------------ order events


def _pay_by(order: CreditOrder) -> datetime:
    """When the order becomes overdue: its due time plus the consumer's grace period (level perk included)."""
    from bnpl.overdue import grace_period_for  # lazy: the overdue service imports the notifications app

    return order.due_at + grace_period_for(order.consumer_id)


_EVENT_KINDS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("order_confirmed", {"to_status": OrderStatus.ACTIVE}),
    ("order_completed", {"to_status": OrderStatus.COMPLETED}),
    (
        "charge_succeeded",
        {
            "to_status": OrderStatus.PAID,
            "from_status__in": [OrderStatus.COMPLETED, OrderStatus.COLLECTING, OrderStatus.OVERDUE],
        },
    ),
    ("charge_failed", {"to_status": OrderStatus.COLLECTING, "from_status": OrderStatus.COMPLETED}),
)


def _event_data(kind: str, order: CreditOrder, event: OrderEvent) -> dict[str, Any]:
    if kind == "order_confirmed":
        return _order_data(order, max_amount=order.max_amount, due_delay_days=policy_for(order.scenario).due_delay.days)
    if kind == "order_completed":
        return _order_data(order, amount_due=order.amount_due, due_at=order.due_at)
    amount = (order.amount_due or 0) + order.late_fee_amount
    if kind == "charge_succeeded":
        return _order_data(order, amount=amount, paid_at=order.paid_at or event.created_at)
    return _order_data(order, amount=amount, pay_by=_pay_by(order))


def sweep_order_events(*, now: datetime | None = None, limit: int = SWEEP_LIMIT) -> dict[str, int]:
    """Confirmed, bill ready, paid, first charge failed: one notification per order and kind."""
    now = now or timezone.now()
    since = now - settings.BNPL_NOTIFY_EVENT_LOOKBACK
    counts: Counter = Counter()
    for kind, condition in _EVENT_KINDS:
        events = _due_rows(
            _not_notified(
                OrderEvent.objects.filter(
                    created_at__gt=since, created_at__lte=now, order__consumer__isnull=False
                ).filter(**condition),
                _key(f"{kind}:order:", '"bnpl_orderevent"."order_id"'),
            ),
            related=("order__merchant", "order__consumer__user"),
            order_by=("created_at", "id"),
            limit=limit,
        )

        def send(event: OrderEvent, kind: str = kind) -> NotifyRequest:
            order = event.order
            return NotifyRequest(
                key=kind,
                data=_event_data(kind, order, event),
                dedupe_key=f"{kind}:order:{order.pk}",
                consumer=order.consumer,
                order=order,
            )

        _run(events, send, counts, kind, now=now)
    return dict(counts)


# ------------------------------------------------------------------------------------------------ pre-charge


def _hours(lead: timedelta) -> int:
    return int(lead.total_seconds() // 3600)


def charge_upcoming_key(order: CreditOrder, lead: timedelta) -> str:
    return f"charge_upcoming:order:{order.pk}:{_hours(lead)}h:{int(order.due_at.timestamp())}"


def sweep_pre_charge(*, now: datetime | None = None, limit: int = SWEEP_LIMIT) -> dict[str, int]:
    """Before each scheduled charge: the mandatory notice at ``charge_notice``, optional closer reminders after.

    The key carries the due time, so an order whose due date moves (an extension) is told again about the new
    date, and never twice about the same one. The optional reminders are withheld from the control group
    (where the policy allows one), and each withheld order gets a :class:`ReminderHoldout` row.
    """
    now = now or timezone.now()
    counts: Counter = Counter()
    due_key = 'floor(extract(epoch from "bnpl_creditorder"."due_at"))::bigint'
    for scenario, policy in SCENARIO_POLICIES.items():
        leads = policy.reminder_leads()
        for lead in leads:
            mandatory = lead == policy.charge_notice
            orders = CreditOrder.objects.filter(
                scenario=scenario,
                status=OrderStatus.COMPLETED,
                charge_paused=False,
                consumer__isnull=False,
                due_at__gt=now,
                due_at__lte=now + lead,
            )
            key = RawSQL(  # noqa: S611 - constant SQL, parameters for values
                f'%s || "bnpl_creditorder"."id"::text || %s || {due_key}::text',
                ["charge_upcoming:order:", f":{_hours(lead)}h:"],
            )
            orders = _not_notified(orders, key)
            if not mandatory:
                notice = RawSQL(  # noqa: S611 - constant SQL, parameters for values
                    f'%s || "bnpl_creditorder"."id"::text || %s || {due_key}::text',
                    ["charge_upcoming:order:", f":{_hours(policy.charge_notice)}h:"],
                )
                orders = orders.annotate(notice_key=notice).filter(
                    Exists(
                        Notification.objects.filter(
                            dedupe_key=OuterRef("notice_key"), created_at__lte=now - EXTRA_REMINDER_MIN_GAP
                        )
                    )
                )
                if policy.reminder_control_allowed:
                    orders = orders.exclude(Exists(ReminderHoldout.objects.filter(order=OuterRef("pk"))))
            orders = _due_rows(orders, related=("merchant", "consumer__user"), order_by=("due_at", "id"), limit=limit)

            def send(
                order: CreditOrder,
                lead: timedelta = lead,
                mandatory: bool = mandatory,
                control_allowed: bool = policy.reminder_control_allowed,
            ) -> NotifyRequest | None:
                if not mandatory and control_allowed and in_control_group(order.pk):
                    ReminderHoldout.objects.get_or_create(order=order)
                    counts["held_out"] += 1
                    return None
                return NotifyRequest(
                    key="charge_upcoming",
                    data=_order_data(order, amount_due=order.amount_due, due_at=order.due_at),
                    dedupe_key=charge_upcoming_key(order, lead),
                    consumer=order.consumer,
                    order=order,
                )

            _run(orders, send, counts, "charge_upcoming", now=now)
    return dict(counts)


# ------------------------------------------------------------------------------------------------ overdue


def sweep_overdue(*, now: datetime | None = None, limit: int = SWEEP_LIMIT) -> dict[str, int]:
    """Days 1, 3, 7, 15 and 30 past due, while the order is unpaid (and its charge not paused by a dispute).

    Each step fires within its own window (up to the next step), so a sweep that was down for a while sends
    the step that is current, not a burst of every step it missed.
    """
    now = now or timezone.now()
    counts: Counter = Counter()
    for index, step in enumerate(OVERDUE_STEPS_DAYS):
        following = OVERDUE_STEPS_DAYS[index + 1] if index + 1 < len(OVERDUE_STEPS_DAYS) else step + 1
        orders = _due_rows(
            _not_notified(
                CreditOrder.objects.filter(
                    status__in=[OrderStatus.COLLECTING, OrderStatus.OVERDUE],
                    charge_paused=False,
                    consumer__isnull=False,
                    due_at__lte=now - timedelta(days=step),
                    due_at__gt=now - timedelta(days=following),
                ),
                _key("payment_overdue:order:", '"bnpl_creditorder"."id"', f":d{step}"),
            ),
            related=("merchant", "consumer__user"),
            order_by=("due_at", "id"),
            limit=limit,
        )

        def send(order: CreditOrder, step: int = step) -> NotifyRequest:
            return NotifyRequest(
                key="payment_overdue",
                data=_order_data(order, amount=(order.amount_due or 0) + order.late_fee_amount, days=step),
                dedupe_key=f"payment_overdue:order:{order.pk}:d{step}",
                consumer=order.consumer,
                order=order,
            )

        _run(orders, send, counts, f"payment_overdue_d{step}", now=now)
    return dict(counts)


# ------------------------------------------------------------------------------------------------ account, agreements


def sweep_account_events(*, now: datetime | None = None, limit: int = SWEEP_LIMIT) -> dict[str, int]:
    """The account paused (new orders refused until paid) or restored."""
    now = now or timezone.now()
    since = now - settings.BNPL_NOTIFY_EVENT_LOOKBACK
    counts: Counter = Counter()
    url = site_url(reverse("me:home"))
    for kind, event_kind in (
        ("account_paused", ProfileEventKind.PAUSED),
        ("account_restored", ProfileEventKind.UNPAUSED),
    ):
        events = _due_rows(
            _not_notified(
                CreditProfileEvent.objects.filter(kind=event_kind, created_at__gt=since, created_at__lte=now),
                _key(f"{kind}:event:", '"consumers_creditprofileevent"."id"'),
            ),
            related=("profile__consumer__user",),
            order_by=("created_at", "id"),
            limit=limit,
        )

        def send(event: CreditProfileEvent, kind: str = kind) -> NotifyRequest:
            data: dict[str, Any] = {"url": url}
            if kind == "account_paused":
                data["reason"] = event.reason or event.after
            return NotifyRequest(
                key=kind, data=data, dedupe_key=f"{kind}:event:{event.pk}", consumer=event.profile.consumer
            )

        _run(events, send, counts, kind, now=now)
    return dict(counts)


def sweep_agreements(*, now: datetime | None = None, limit: int = SWEEP_LIMIT) -> dict[str, int]:
    """A standing agreement just signed: before the merchant's first order under it, say what it allows."""
    now = now or timezone.now()
    since = now - settings.BNPL_NOTIFY_EVENT_LOOKBACK
    counts: Counter = Counter()
    agreements = _due_rows(
        _not_notified(
            Agreement.objects.filter(status=AgreementStatus.VALID, signed_at__gt=since, signed_at__lte=now),
            _key("agreement_first_use:agreement:", '"bnpl_agreement"."id"'),
        ),
        related=("merchant", "listing", "consumer__user"),
        order_by=("signed_at", "id"),
        limit=limit,
    )
    url = site_url(reverse("me:agreements"))

    def send(agreement: Agreement) -> NotifyRequest:
        return NotifyRequest(
            key="agreement_first_use",
            data={"merchant": agreement.merchant.display_name, "listing": agreement.listing.title, "url": url},
            dedupe_key=f"agreement_first_use:agreement:{agreement.pk}",
            consumer=agreement.consumer,
        )

    _run(agreements, send, counts, "agreement_first_use", now=now)
    return dict(counts)


# ------------------------------------------------------------------------------------------------ merchants


DIGEST_LIST_LIMIT = 20


def send_merchant_digests(*, now: datetime | None = None) -> dict[str, int]:
    """Daily, to every member of a merchant with something to report: charges that failed in the last 24 h and
    disputes whose response deadline falls within ``BNPL_DIGEST_DISPUTE_WARNING``. Nothing to report, no mail.
    """
    now = now or timezone.now()
    day = now.astimezone(BEIJING).date().isoformat()
    counts: Counter = Counter()
    failed = (
        CreditOrder.objects.filter(
            status__in=[OrderStatus.COLLECTING, OrderStatus.OVERDUE],
            collecting_since__gt=now - timedelta(days=1),
            collecting_since__lte=now,
        )
        .order_by("merchant_id", "collecting_since", "id")
        .values("merchant_id", "out_order_no", "title", "amount_due", "collecting_since")
    )
    disputes = (
        Dispute.objects.filter(status__in=DISPUTE_ACTIVE, respond_by__lte=now + settings.BNPL_DIGEST_DISPUTE_WARNING)
        .order_by("merchant_id", "respond_by", "id")
        .values("merchant_id", "order__out_order_no", "respond_by", "disputed_amount")
    )
    by_merchant: dict[int, dict[str, list]] = {}
    for row in failed:
        by_merchant.setdefault(row["merchant_id"], {"failed": [], "disputes": []})["failed"].append(row)
    for row in disputes:
        by_merchant.setdefault(row["merchant_id"], {"failed": [], "disputes": []})["disputes"].append(row)
    if not by_merchant:
        return {}
    members = MerchantMember.objects.filter(merchant_id__in=by_merchant).select_related("merchant", "user")
    url = site_url("/merchant/")
    for member in members:
        report = by_merchant[member.merchant_id]

        def send(member: MerchantMember, report: dict[str, list] = report) -> NotifyRequest:
            return NotifyRequest(
                key="merchant_digest",
                data={
                    "merchant": member.merchant.display_name,
                    "day": day,
                    "failed_charges": [
                        {"order_no": r["out_order_no"], "title": r["title"], "amount": r["amount_due"]}
                        for r in report["failed"][:DIGEST_LIST_LIMIT]
                    ],
                    "failed_total": len(report["failed"]),
                    "disputes": [
                        {
                            "order_no": r["order__out_order_no"],
                            "respond_by": r["respond_by"],
                            "amount": r["disputed_amount"],
                        }
                        for r in report["disputes"][:DIGEST_LIST_LIMIT]
                    ],
                    "url": url,
                },
                dedupe_key=f"merchant_digest:member:{member.pk}:{day}",
                member=member,
            )

        _run([member], send, counts, "merchant_digest", now=now)
    return dict(counts)


def sweep_all(*, now: datetime | None = None) -> dict[str, int]:
    """Every consumer reminder sweep, in one job run (the delivery job sends what they wrote)."""
    now = now or timezone.now()
    counts: Counter = Counter()
    for sweep in (sweep_order_events, sweep_pre_charge, sweep_overdue, sweep_account_events, sweep_agreements):
        counts.update(sweep(now=now))
    return dict(counts)
