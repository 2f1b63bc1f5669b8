"""Merchant settlement (结算): daily batches of what the platform owes each merchant, payouts and statements.

``settle_merchants`` (a daily job) makes at most one :class:`SettlementBatch` per
merchant per business day. It takes the merchant-payable ledger entries posted before
the day's cutoff that are *settleable* and in no batch yet:

- entries of orders the consumer has paid (``paid``, ``partially_refunded``,
  ``refunded``), and of orders under the platform guarantee (``guaranteed_at`` set,
  i.e. collection failed for the guarantee window): completions (gross), fees,
  refunds and adjustments (amount lowered, paid elsewhere);
- payouts are not settled: they are what settlement produces.

Active disputes on settleable orders add a ``hold`` line (−disputed amount); once the
dispute is closed, a ``release`` line gives it back. ``net = gross − fees − refunds ±
adjustments − held + released``. A batch is made only when its net is positive;
otherwise everything waits for a later day (a refund after a payout is recovered from
the next sales).

Exactly once: each merchant is settled in its own transaction under a transaction-level
advisory lock taken with ``pg_try_advisory_xact_lock`` (a concurrent job skips the
merchant rather than waiting), and ``SettlementItem.ledger_entry`` is unique, so even a
writer that bypassed the lock could not put an entry in two batches.
"""

from __future__ import annotations

import csv
import io
import logging
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from .exceptions import InvalidTransition, NotAllowed
from .ledger import account_balance, ledger_account_for, post_payout
from .models import Dispute, LedgerAccount, Payout, SettlementBatch, SettlementItem
from .models.ledger import AccountKind
from .models.settlement import DISPUTE_ACTIVE, PayoutStatus, SettlementItemKind
from .money import ZERO

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    Actor = AbstractBaseUser | None

logger = logging.getLogger(__name__)

K = SettlementItemKind
# Advisory-lock namespace of settlement (the two-int form: namespace, merchant id).
_LOCK_NAMESPACE = 0x534554  # "SET"
SETTLEABLE_STATUSES = ("paid", "partially_refunded", "refunded")
KIND_OF_TRANSACTION = {
    "completion": K.COMPLETION,
    "fee": K.FEE,
    "refund": K.REFUND,
    "adjustment": K.ADJUSTMENT,
}

# Unsettled, settleable entries of one merchant's payable account posted before the cutoff.
_SETTLEABLE_ENTRIES = """
SELECT e.id, e.amount, t.kind, t.order_id, t.created_at
FROM bnpl_ledgerentry e
JOIN bnpl_ledgertransaction t ON t.id = e.transaction_id
JOIN bnpl_creditorder o ON o.id = t.order_id
WHERE e.account_id = %(account)s
  AND t.kind IN ('completion', 'fee', 'refund', 'adjustment')
  AND t.created_at < %(cutoff)s
  AND (o.status IN ('paid', 'partially_refunded', 'refunded') OR o.guaranteed_at IS NOT NULL)
  AND NOT EXISTS (SELECT 1 FROM bnpl_settlementitem s WHERE s.ledger_entry_id = e.id)
ORDER BY t.created_at, e.id
"""


def business_day_cutoff(business_date: date) -> datetime:
    """The end of a business day in the platform's time zone (Asia/Shanghai): entries before it belong to it."""
    tz = timezone.get_default_timezone()
    return datetime.combine(business_date + timedelta(days=1), time.min, tzinfo=tz)


def _previous_business_date() -> date:
    return timezone.localdate() - timedelta(days=1)


def _hold_lines(merchant_id: int, now: datetime) -> list[SettlementItem]:
    """Hold lines for active disputes on settleable orders not yet held; release lines for closed held ones."""
    lines: list[SettlementItem] = []
    held_ids = set(
        SettlementItem.objects.filter(merchant_id=merchant_id, kind=K.HOLD).values_list("dispute_id", flat=True)
    )
    released_ids = set(
        SettlementItem.objects.filter(merchant_id=merchant_id, kind=K.RELEASE).values_list("dispute_id", flat=True)
    )
    active = Dispute.objects.filter(merchant_id=merchant_id, status__in=DISPUTE_ACTIVE).exclude(pk__in=held_ids)
    for dispute in active.select_related("order"):
        order = dispute.order
        if order.status in SETTLEABLE_STATUSES or order.guaranteed_at is not None:
            lines.append(
                SettlementItem(
                    merchant_id=merchant_id,
                    order_id=order.pk,
                    dispute=dispute,
                    kind=K.HOLD,
                    amount=-dispute.disputed_amount,
                    occurred_at=dispute.created_at,
                )
            )
    closed = Dispute.objects.filter(pk__in=held_ids - released_ids).exclude(status__in=DISPUTE_ACTIVE).order_by("pk")
    held_amount = dict(
        SettlementItem.objects.filter(dispute__in=closed, kind=K.HOLD).values_list("dispute_id", "amount")
    )
    for dispute in closed:
        lines.append(
            SettlementItem(
                merchant_id=merchant_id,
                order_id=dispute.order_id,
                dispute=dispute,
                kind=K.RELEASE,
                amount=-held_amount[dispute.pk],
                occurred_at=dispute.closed_at or now,
            )
        )
    return lines


def _settle_one(account: LedgerAccount, *, business_date: date, cutoff: datetime) -> SettlementBatch | None:
    """Settle one merchant for one business day, in one transaction; None when there is nothing to pay."""
    merchant_id = account.merchant_id
    assert merchant_id is not None
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [_LOCK_NAMESPACE, merchant_id])
            if not cursor.fetchone()[0]:
                return None  # another job is settling this merchant right now
            if SettlementBatch.objects.filter(merchant_id=merchant_id, business_date=business_date).exists():
                return None
            cursor.execute(_SETTLEABLE_ENTRIES, {"account": account.pk, "cutoff": cutoff})
            rows = cursor.fetchall()
        # Entries are signed from the ledger's side (a credit to the merchant is negative); lines from the merchant's.
        items = [
            SettlementItem(
                merchant_id=merchant_id,
                order_id=order_id,
                ledger_entry_id=entry_id,
                kind=KIND_OF_TRANSACTION[kind],
                amount=-amount,
                occurred_at=created_at,
            )
            for entry_id, amount, kind, order_id, created_at in rows
        ]
        items += _hold_lines(merchant_id, timezone.now())
        if not items:
            return None
        totals = {kind: ZERO for kind in K.values}
        for item in items:
            totals[item.kind] += item.amount
        net = sum(totals.values(), ZERO)
        if net <= ZERO:
            return None  # nothing to pay out today: the lines wait for a day with more sales
        batch = SettlementBatch.objects.create(
            merchant_id=merchant_id,
            business_date=business_date,
            cutoff_at=cutoff,
            gross_amount=totals[K.COMPLETION],
            fee_amount=-totals[K.FEE],
            refund_amount=-totals[K.REFUND],
            adjustment_amount=totals[K.ADJUSTMENT],
            held_amount=-totals[K.HOLD],
            released_amount=totals[K.RELEASE],
            net_amount=net,
            item_count=len(items),
        )
        for item in items:
            item.batch = batch
        SettlementItem.objects.bulk_create(items)
        Payout.objects.create(batch=batch, merchant_id=merchant_id, amount=net)
    return batch


def settle_merchants(*, business_date: date | None = None, merchant_ids: list[int] | None = None) -> list[int]:
    """The daily settlement job: one batch (and pending payout) per merchant with something to pay.

    ``business_date`` defaults to yesterday in Asia/Shanghai; entries posted before the
    end of that day are taken. Safe to run twice and on several workers at once: a
    merchant already settled for the day, or being settled by another job, is skipped;
    entries are unique across batches. Returns the ids of the batches made.
    """
    business_date = business_date or _previous_business_date()
    cutoff = business_day_cutoff(business_date)
    accounts = LedgerAccount.objects.filter(kind=AccountKind.MERCHANT_PAYABLE).order_by("merchant_id")
    if merchant_ids is not None:
        accounts = accounts.filter(merchant_id__in=merchant_ids)
    made: list[int] = []
    for account in accounts:
        try:
            batch = _settle_one(account, business_date=business_date, cutoff=cutoff)
        except IntegrityError:
            # Another writer settled an entry or the day first (unique constraints): its batch stands.
            logger.warning("settlement of merchant %s for %s lost a race", account.merchant_id, business_date)
            continue
        if batch is not None:
            made.append(batch.pk)
    return made


def settle_merchants_task() -> dict[str, object]:
    """django-q2 entry point of the daily settlement (kept small: django-q2 stores the result)."""
    made = settle_merchants()
    return {"batches": len(made)}


# --------------------------------------------------------------------------- payouts


@transaction.atomic(durable=True)
def payout_mark_paid(*, actor: Actor, payout: Payout, reference: str = "") -> Payout:
    """Record that a batch's payout reached the merchant's bank: ledger ``post_payout``, key ``payout:<id>``.

    Refused (nothing posted) for a payout already paid, for one whose amount is not its
    batch's settled net (only settled entries are ever paid out), and when the merchant's
    payable balance does not cover it.
    """
    payout = Payout.objects.select_for_update().select_related("batch").get(pk=payout.pk)
    if payout.status != PayoutStatus.PENDING:
        raise InvalidTransition(
            _("payout %(id)s is %(status)s; it cannot be paid") % {"id": payout.pk, "status": payout.status}
        )
    settled = SettlementItem.objects.filter(batch=payout.batch).aggregate(t=Sum("amount"))["t"] or ZERO
    if payout.amount != payout.batch.net_amount or payout.amount != settled:
        raise NotAllowed(
            _("Payout %(id)s does not match its settled batch; only settled entries are paid out.") % {"id": payout.pk},
            code="payout_unsettled",
        )
    owed = -account_balance(ledger_account_for(AccountKind.MERCHANT_PAYABLE, merchant=payout.merchant_id))
    if payout.amount > owed:
        raise NotAllowed(
            _("The merchant is owed %(owed)s, less than payout %(id)s.") % {"owed": owed, "id": payout.pk},
            code="payout_exceeds_payable",
        )
    post_payout(merchant=payout.merchant_id, payout_key=str(payout.pk), amount=payout.amount)
    payout.status = PayoutStatus.PAID
    payout.reference = (reference or "")[:64]
    payout.paid_by = actor if getattr(actor, "is_authenticated", False) else None
    payout.paid_at = timezone.now()
    payout.save(update_fields=["status", "reference", "paid_by", "paid_at"])
    return payout


# --------------------------------------------------------------------------- statements


def _fmt(value: Decimal) -> str:
    return f"{value:.2f}"


def statement_rows(batch: SettlementBatch) -> list[list[str]]:
    """The statement's lines: one per settlement item, then a total line; amounts from the merchant's side.

    Columns: order id, merchant order no., time (Asia/Shanghai), type, gross, fee,
    refund, adjustment, held, net. Fee, refund and held are shown as positive
    deductions (a released hold as a negative one), so every line has
    net = gross − fee − refund + adjustment − held.
    """
    rows: list[list[str]] = []
    totals = [ZERO] * 6
    items = batch.items.select_related("order").order_by("occurred_at", "id")
    for item in items:
        gross = item.amount if item.kind == K.COMPLETION else ZERO
        fee = -item.amount if item.kind == K.FEE else ZERO
        refund = -item.amount if item.kind == K.REFUND else ZERO
        adjustment = item.amount if item.kind == K.ADJUSTMENT else ZERO
        held = -item.amount if item.kind in (K.HOLD, K.RELEASE) else ZERO
        values = [gross, fee, refund, adjustment, held, item.amount]
        totals = [a + b for a, b in zip(totals, values, strict=True)]
        rows.append(
            [
                str(item.order_id or ""),
                item.order.out_order_no if item.order else "",
                timezone.localtime(item.occurred_at).strftime("%Y-%m-%d %H:%M"),
                str(K(item.kind).label),
                *(_fmt(v) for v in values),
            ]
        )
    rows.append(["", "", "", _("Total"), *(_fmt(v) for v in totals)])
    return rows


def statement_header() -> list[str]:
    return [
        _("Order id"),
        _("Merchant order no."),
        _("Time"),
        _("Type"),
        _("Gross"),
        _("Fee"),
        _("Refund"),
        _("Adjustment"),
        _("Held"),
        _("Net"),
    ]


def statement_csv(batch: SettlementBatch) -> bytes:
    """The batch's statement (对账单) as CSV in UTF-8 with a BOM, so Excel shows Chinese text correctly."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(statement_header())
    writer.writerows(statement_rows(batch))
    return buffer.getvalue().encode("utf-8-sig")


def statement_filename(batch: SettlementBatch) -> str:
    return f"statement-{batch.merchant_id}-{batch.business_date:%Y%m%d}.csv"


# --------------------------------------------------------------------------- selectors (merchant-scoped)


def settlement_batches_for_merchant(*, merchant: object) -> QuerySet[SettlementBatch]:
    """The merchant's own settlement batches, with their payouts (one query per page)."""
    return SettlementBatch.objects.filter(merchant=merchant).select_related("payout")


def settlement_batch_get_for_merchant(*, merchant: object, batch_id: object) -> SettlementBatch:
    """One batch of this merchant; another merchant's id raises ``DoesNotExist`` like a missing one."""
    return settlement_batches_for_merchant(merchant=merchant).get(pk=int(batch_id))  # type: ignore[call-overload]
