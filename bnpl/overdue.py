"""Collection after a failed charge: overdue classification, days past due, guarantee, write-off.

Three jobs and two staff/system services, all sweeping the database (docs/charging.md):

- :func:`classify_overdue` (daily): collecting orders past the grace period become
  ``overdue`` — the consumer is paused, the promise record says breached, a late fee
  is added when the policy has one — and every overdue order's days past due (DPD)
  and bucket (M0 1–30, M1 31–60, M2 61–90, M3+) are recomputed.
- :func:`apply_guarantee` (hourly): orders whose collection has failed for the
  guarantee window get the platform guarantee (代偿): the merchant's money becomes
  payable from the platform's own funds, once per order.
- :func:`credit_order_write_off`: staff give up on an overdue order, with a reason.

A later successful charge of an overdue order (``bnpl.charging``) or a payment
elsewhere (``bnpl.services``) makes the record ``recovered`` and lifts the pause when
no other order of the consumer is overdue (:func:`overdue_pause_lift`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from consumers.choices import PromiseOutcome
from consumers.models import CreditProfile, PromiseRecord, RewardAccount
from consumers.rewards import grace_extra_for
from consumers.rewards_policy import LEVELS
from consumers.services import credit_hold_release, credit_profile_pause, credit_profile_unpause, promise_record_add
from scoring.services import features_on_promise_record

from .choices import ActorKind, OrderStatus
from .exceptions import NotAllowed
from .incentives import incentives_on_promise_record
from .ledger import (
    ledger_account_for,
    ledger_post,
    order_account_balance,
    post_guarantee,
    post_write_off,
)
from .models import CreditOrder, OrderEvent
from .models.charging import DpdBucket
from .models.ledger import AccountKind, TransactionKind
from .money import ZERO, to_money
from .services import _lock_order, _move, _refusal, _required_reason

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from consumers.models import Consumer

    Actor = AbstractBaseUser | None

logger = logging.getLogger(__name__)

S = OrderStatus
CHUNK = 200
DAY = timedelta(days=1)

# The pause reason is data, not a message: language-neutral, so that the pause this module set can be told
# apart from a pause staff set for another reason (only ours is lifted automatically).
OVERDUE_PAUSE_PREFIX = "overdue order #"


def overdue_pause_reason(order: CreditOrder) -> str:
    """The pause reason written when ``order`` becomes overdue; it names the order."""
    return f"{OVERDUE_PAUSE_PREFIX}{order.pk} ({order.out_order_no})"[:200]


# --------------------------------------------------------------------------- policies


def dpd_for(due_at: datetime, now: datetime) -> int:
    """Days past due: whole days elapsed since the charge was due (0 before one full day)."""
    if now <= due_at:
        return 0
    return (now - due_at) // DAY


def dpd_bucket_for(dpd: int) -> str:
    """The delinquency bucket of a DPD: M0 1–30, M1 31–60, M2 61–90, M3+ above 90; current at 0."""
    if dpd <= 0:
        return DpdBucket.CURRENT
    if dpd <= 30:
        return DpdBucket.M0
    if dpd <= 60:
        return DpdBucket.M1
    if dpd <= 90:
        return DpdBucket.M2
    return DpdBucket.M3_PLUS


def late_fee_for(amount_due: Decimal) -> Decimal:
    """The late fee of an order becoming overdue: none by default; else the set fee, capped at a share.

    ``BNPL_LATE_FEE_AMOUNT`` (default ¥0: no late fees, like Affirm) capped at
    ``BNPL_LATE_FEE_MAX_SHARE`` of the amount due, rounded half-up to the fen.
    """
    fee = Decimal(settings.BNPL_LATE_FEE_AMOUNT)
    if fee <= ZERO or amount_due <= ZERO:
        return ZERO
    cap = to_money(amount_due * Decimal(settings.BNPL_LATE_FEE_MAX_SHARE))
    return max(min(to_money(fee), cap), ZERO)


def grace_period_for(consumer_id: int | None) -> timedelta:
    """The grace period of one consumer: the platform's, lengthened by their rewards level (a 守约激励 perk)."""
    return settings.BNPL_GRACE_PERIOD + grace_extra_for(consumer_id)


def _within_level_grace(now: datetime) -> Q:
    """Orders past the platform's grace period whose consumer's level still gives them more time.

    A subquery on the consumer id, not a join: the overdue job's ``FOR UPDATE`` must lock order rows only.
    """
    within = Q(pk__in=[])
    for level in LEVELS:
        if level.extra_grace:
            within |= Q(
                consumer_id__in=RewardAccount.objects.filter(level=level.level).values("consumer_id"),
                due_at__gt=now - settings.BNPL_GRACE_PERIOD - level.extra_grace,
            )
    return within


# --------------------------------------------------------------------------- pause


def overdue_pause_lift(*, actor: Actor, order: CreditOrder) -> bool:
    """After ``order`` was paid: lift the consumer's overdue pause unless another order is still overdue.

    Only a pause this module set (its reason starts with :data:`OVERDUE_PAUSE_PREFIX`)
    is lifted; a pause staff set for another reason stays. Runs in the caller's
    transaction, after the order has left ``overdue``. Returns whether it lifted one.
    """
    if order.consumer_id is None:
        return False
    profile = CreditProfile.objects.select_for_update().filter(consumer_id=order.consumer_id).first()
    if profile is None or not profile.is_paused or not profile.paused_reason.startswith(OVERDUE_PAUSE_PREFIX):
        return False
    if CreditOrder.objects.filter(consumer_id=order.consumer_id, status=S.OVERDUE).exclude(pk=order.pk).exists():
        return False
    credit_profile_unpause(
        actor=actor, consumer=profile.consumer, reason=f"{OVERDUE_PAUSE_PREFIX}{order.pk} paid ({order.out_order_no})"
    )
    return True


def _pause_for(order: CreditOrder) -> bool:
    consumer: Consumer = order.consumer  # type: ignore[assignment]
    if CreditProfile.objects.filter(consumer=consumer, is_paused=True).exists():
        return False  # already paused (another overdue order, or staff): one pause, its first reason kept
    try:
        credit_profile_pause(actor=None, consumer=consumer, reason=overdue_pause_reason(order))
    except NotAllowed:
        return False  # paused meanwhile by someone else
    return True


# --------------------------------------------------------------------------- overdue


@transaction.atomic
def credit_order_mark_overdue(*, order: CreditOrder, now: datetime | None = None) -> CreditOrder:
    """A collecting order past the grace period becomes ``overdue`` (a system action).

    In one transaction: the transition and its event; DPD and bucket; the consumer's
    pause (reason naming the order, unless already paused); the promise record
    ``breached``; and the late fee, when the policy has one (posted once, key
    ``late_fee:<order>``: Dr consumer receivable / Cr platform fee revenue). Refused
    (``InvalidTransition``) for an order not collecting, ``NotAllowed`` before the grace
    period ends or while a charge attempt is in flight (its outcome may yet be a payment).
    """
    now = now or timezone.now()
    order = _lock_order(order)
    if order.status != S.COLLECTING:
        raise _refusal(order, _("marked overdue"))
    assert order.due_at is not None and order.amount_due is not None and order.consumer is not None
    if now < order.due_at + grace_period_for(order.consumer_id):
        raise NotAllowed(_("The order is still within its grace period."), code="within_grace")
    if order.charge_in_flight:
        raise NotAllowed(_("A charge of this order is in progress."), code="charge_in_progress")
    order.overdue_since = now
    order.dpd = dpd_for(order.due_at, now)
    order.dpd_bucket = dpd_bucket_for(order.dpd)
    fee = ZERO if order.late_fee_amount > ZERO else late_fee_for(order.amount_due)
    if fee > ZERO:
        order.late_fee_amount = fee
        ledger_post(
            kind=TransactionKind.FEE,
            idempotency_key=f"late_fee:{order.pk}",
            order=order,
            entries=[
                (ledger_account_for(AccountKind.CONSUMER_RECEIVABLE, consumer=order.consumer_id), fee),
                (ledger_account_for(AccountKind.PLATFORM_FEE_REVENUE), -fee),
            ],
            description=f"late fee on order {order.pk}",
        )
    paused = _pause_for(order)
    _move(
        order,
        to=S.OVERDUE,
        actor=None,
        actor_kind=ActorKind.SYSTEM,
        reason=_("Not paid within the grace period"),
        data={"dpd": order.dpd, "bucket": order.dpd_bucket, "late_fee": str(fee), "consumer_paused": paused},
        update_fields=["overdue_since", "dpd", "dpd_bucket", "late_fee_amount"],
    )
    if not PromiseRecord.objects.filter(order_id=order.pk).exists():
        record = promise_record_add(
            consumer=order.consumer,
            merchant_id=order.merchant_id,
            order_id=order.pk,
            outcome=PromiseOutcome.BREACHED,
            amount=order.amount_due,
            recorded_at=now,
        )
        features_on_promise_record(actor=None, record=record, days_past_due=order.dpd)
        incentives_on_promise_record(actor=None, record=record, now=now)
    return order


def _isolated(service: Callable[..., object], **kwargs: object) -> bool:
    """Run one order's service in a savepoint; a failure is logged and skipped, never stops the job.

    Returns whether the service did its work (a falsy return, or an error, is False).
    """
    try:
        with transaction.atomic():
            return bool(service(**kwargs))
    except Exception:
        logger.exception("%s failed for order %s; skipped until the next run", service.__name__, kwargs.get("order"))
        return False


@dataclass
class OverdueReport:
    """What one :func:`classify_overdue` run did (``skipped``: orders whose marking failed, logged)."""

    marked_overdue: int = 0
    skipped: int = 0
    dpd_updated: int = 0


_DPD_SQL = """
UPDATE bnpl_creditorder o SET dpd = v.dpd, dpd_bucket = v.bucket, updated_at = %(now)s
FROM (
    SELECT id, d AS dpd,
           CASE WHEN d <= 0 THEN '' WHEN d <= 30 THEN 'M0' WHEN d <= 60 THEN 'M1' WHEN d <= 90 THEN 'M2'
                ELSE 'M3+' END AS bucket
    FROM (
        SELECT id, GREATEST(0, FLOOR(EXTRACT(EPOCH FROM (%(now)s - due_at)) / 86400))::int AS d
        FROM bnpl_creditorder WHERE status = 'overdue' AND id > %(after)s ORDER BY id LIMIT %(chunk)s
    ) AS days
) AS v
WHERE o.id = v.id AND o.status = 'overdue' AND (o.dpd <> v.dpd OR o.dpd_bucket <> v.bucket)
"""


def _dpd_refresh(now: datetime) -> int:
    """Recompute DPD and bucket of every overdue order, in chunks of ids; returns how many rows changed."""
    changed, after, chunk = 0, 0, 5000
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT max(id), count(*) FROM (SELECT id FROM bnpl_creditorder WHERE status = 'overdue' "
                "AND id > %s ORDER BY id LIMIT %s) AS page",
                [after, chunk],
            )
            last, n = cursor.fetchone()
            if not n:
                return changed
            cursor.execute(_DPD_SQL, {"now": now, "after": after, "chunk": chunk})
            changed += cursor.rowcount
        after = last


def classify_overdue(*, now: datetime | None = None, limit: int | None = None) -> OverdueReport:
    """The daily overdue job: mark orders past the grace period overdue, then refresh every overdue order's DPD.

    Orders are claimed in chunks with ``SKIP LOCKED`` (partial index
    ``order_collecting_due_idx``), one transaction per chunk, so two runs share the
    work and a second run finds nothing left. An order with a charge in flight is left
    for the next run: its attempt may turn out to have paid it.
    """
    now = now or timezone.now()
    report = OverdueReport()
    cutoff = now - settings.BNPL_GRACE_PERIOD
    failed: set[int] = set()
    while limit is None or report.marked_overdue < limit:
        size = CHUNK if limit is None else min(CHUNK, limit - report.marked_overdue)
        with transaction.atomic():
            batch = list(
                CreditOrder.objects.select_for_update(skip_locked=True)
                # A disputed order (charge paused) is neither overdue nor a breach while staff look at it.
                .filter(status=S.COLLECTING, due_at__lte=cutoff, charge_in_flight=False, charge_paused=False)
                .exclude(_within_level_grace(now))
                .exclude(pk__in=failed)
                .order_by("due_at", "id")[:size]
            )
            for order in batch:
                if _isolated(credit_order_mark_overdue, order=order, now=now):
                    report.marked_overdue += 1
                else:
                    failed.add(order.pk)
                    report.skipped += 1
        if len(batch) < size:
            break
    report.dpd_updated = _dpd_refresh(now)
    logger.info("classify_overdue: %s", report)
    return report


# --------------------------------------------------------------------------- guarantee


@transaction.atomic
def credit_order_guarantee(*, order: CreditOrder, now: datetime | None = None) -> bool:
    """Apply the platform guarantee (代偿) to an order whose collection has failed for the window.

    Sets ``guaranteed_at``, posts ``post_guarantee`` for the amount due (key
    ``guarantee:<order>``: the merchant's payable is now funded by the platform) and
    writes an event row. Once per order: returns False, changing nothing, when the
    order is already guaranteed, not in collection, or still inside the window.
    """
    now = now or timezone.now()
    order = _lock_order(order)
    if order.guaranteed_at is not None or order.status not in (S.COLLECTING, S.OVERDUE):
        return False
    if order.collecting_since is None or now < order.collecting_since + settings.BNPL_GUARANTEE_WINDOW:
        return False
    assert order.amount_due is not None
    if order.amount_due > ZERO:
        post_guarantee(order, amount=order.amount_due)
    order.guaranteed_at = now
    order.save(update_fields=["guaranteed_at", "updated_at"])
    OrderEvent.objects.create(
        order=order,
        actor=None,
        actor_kind=ActorKind.SYSTEM,
        from_status=order.status,
        to_status=order.status,
        reason=_("Platform guarantee: the merchant is paid while collection goes on"),
        data={"event": "guaranteed", "amount": str(order.amount_due)},
    )
    return True


def apply_guarantee(*, now: datetime | None = None, limit: int | None = None) -> int:
    """The hourly guarantee job: guarantee every order whose collection has failed for the window.

    Claims in chunks with ``SKIP LOCKED`` (partial index ``order_guarantee_due_idx``);
    running it twice, or on two workers, guarantees each order once. Returns how many.
    """
    now = now or timezone.now()
    cutoff = now - settings.BNPL_GUARANTEE_WINDOW
    done = 0
    failed: set[int] = set()
    while limit is None or done < limit:
        size = CHUNK if limit is None else min(CHUNK, limit - done)
        with transaction.atomic():
            batch = list(
                CreditOrder.objects.select_for_update(skip_locked=True)
                # No advance to the merchant on an order the consumer disputes before the charge.
                .filter(
                    status__in=[S.COLLECTING, S.OVERDUE],
                    guaranteed_at__isnull=True,
                    collecting_since__lte=cutoff,
                    charge_paused=False,
                )
                .exclude(pk__in=failed)
                .order_by("collecting_since", "id")[:size]
            )
            for order in batch:
                if _isolated(credit_order_guarantee, order=order, now=now):
                    done += 1
                else:
                    failed.add(order.pk)
        if len(batch) < size:
            break
    logger.info("apply_guarantee: %d orders guaranteed", done)
    return done


# --------------------------------------------------------------------------- write-off


@transaction.atomic(durable=True)
def credit_order_write_off(*, actor: Actor, order: CreditOrder, reason: str) -> CreditOrder:
    """Staff write off an overdue order they no longer expect to collect, with a reason.

    What the consumer still owes on it in the ledger becomes bad debt
    (``post_write_off``); the hold is released; the order is closed. The promise
    record stays ``breached`` and the consumer's pause stays (the debt was not paid).
    Refused while a charge attempt is in flight, whose outcome may still be a payment.
    """
    reason = _required_reason(reason)
    order = _lock_order(order)
    if order.status != S.OVERDUE:
        raise _refusal(order, _("written off"))
    if order.charge_in_flight:
        raise NotAllowed(
            _("A charge of this order is in progress; try again when it is settled."), code="charge_in_progress"
        )
    outstanding = order_account_balance(order, AccountKind.CONSUMER_RECEIVABLE)
    if outstanding > ZERO:
        post_write_off(order, amount=outstanding)
    if order.hold_amount > ZERO:
        credit_hold_release(consumer=order.consumer, amount=order.hold_amount)  # type: ignore[arg-type]
    order.hold_amount = ZERO
    now = timezone.now()
    order.closed_at = now
    order.close_reason = reason
    order.next_attempt_at = None
    _move(
        order,
        to=S.WRITTEN_OFF,
        actor=actor,
        actor_kind=ActorKind.STAFF,
        reason=reason,
        data={"written_off": str(max(outstanding, ZERO))},
        update_fields=["hold_amount", "closed_at", "close_reason", "next_attempt_at"],
    )
    return order
