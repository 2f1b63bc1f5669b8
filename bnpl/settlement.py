"""Merchant settlement (结算): daily batches of what the platform owes each merchant, payouts and statements.

``settle_merchants`` (a daily job) makes at most one :class:`SettlementBatch` per
merchant per business day. It takes the merchant-payable ledger entries posted before
the day's cutoff that are *settleable* and in no batch yet:

- entries of orders the consumer has paid (``paid``, ``partially_refunded``,
  ``refunded``), and of orders under the platform guarantee (``guaranteed_at`` set,
  i.e. collection failed for the guarantee window): completions (gross), fees,
  refunds and adjustments (amount lowered, paid elsewhere);
- payouts are not settled: they are what settlement produces.

Candidates come from the settlement queue (:class:`~bnpl.models.UnsettledEntry`): a database
trigger queues each such entry in its posting's transaction, and the batch's transaction
deletes the queue rows of the entries it takes, so the daily cost follows the entries still
waiting, not the merchant's history. Entries whose order is not settleable yet stay queued.

Active disputes on settleable orders add a ``hold`` line (−disputed amount); once the
dispute is closed, a ``release`` line gives it back. ``net = gross − fees − refunds ±
adjustments − held + released``. A batch is made only when its net is positive;
otherwise everything waits for a later day (a refund after a payout is recovered from
the next sales).

Payouts: the payout job (``payouts_send_due``) sends each batch's pending payout through
the gateway under a fixed per-attempt key written first, posts ``post_payout`` only on
success, retries failures on a schedule, and ``payouts_reconcile`` settles unknown ones.
Statements: ``statement_csv`` and ``statement_xlsx`` are built from the same lines.
Each batch, payout success and payout failure writes a ``settlement.*`` webhook event in
its own transaction.

Exactly once: each merchant is settled in its own transaction under a transaction-level
advisory lock taken with ``pg_try_advisory_xact_lock`` (a concurrent job skips the
merchant rather than waiting); the batch's transaction dequeues exactly the entries it
takes (or rolls back), and ``SettlementItem.ledger_entry`` is unique, so even a writer that
bypassed the lock could not put an entry in two batches.
"""

from __future__ import annotations

import csv
import io
import logging
import secrets
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from .exceptions import DomainError, InvalidTransition, NotAllowed
from .gateway import get_gateway
from .gateway.base import ChargeOutcome, GatewayRequestError, GatewayResult, PaymentGateway
from .ledger import account_balance, ledger_account_for, post_payout
from .models import Dispute, LedgerAccount, LedgerTransaction, Payout, SettlementBatch, SettlementItem
from .models.ledger import AccountKind
from .models.settlement import (
    DISPUTE_ACTIVE,
    PAYOUT_IN_FLIGHT,
    UNSETTLED_ENTRY_BACKFILL,
    PayoutStatus,
    SettlementItemKind,
)
from .money import ZERO
from .refunds import _refuse_inside_transaction
from .spreadsheets import safe_text_cell
from .webhooks import settlement_webhook

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

# Unsettled, settleable entries of one merchant's payable account posted before the cutoff: read from the
# settlement queue (UnsettledEntry: only the entries no batch has taken), never from the account's history.
# The queue holds only completion, fee, refund and adjustment entries (its trigger, migration 0015).
_SETTLEABLE_ENTRIES = """
SELECT e.id, e.amount, t.kind, t.order_id, t.created_at
FROM bnpl_unsettledentry q
JOIN bnpl_ledgerentry e ON e.id = q.entry_id
JOIN bnpl_ledgertransaction t ON t.id = e.transaction_id
JOIN bnpl_creditorder o ON o.id = t.order_id
WHERE q.account_id = %(account)s
  AND q.created_at < %(cutoff)s
  AND (o.status IN ('paid', 'partially_refunded', 'refunded') OR o.guaranteed_at IS NOT NULL)
ORDER BY t.created_at, e.id
"""
# Take a batch's entries off the queue; an entry no longer queued was taken by another writer.
_DEQUEUE = "DELETE FROM bnpl_unsettledentry WHERE entry_id = ANY(%s)"


class _EntriesTaken(IntegrityError):
    """Some of a batch's entries were dequeued by another writer meanwhile (it settled them first)."""


def queue_unsettled_entries() -> int:
    """Queue every settleable-kind merchant-payable entry in no batch yet; returns how many were added.

    New entries are queued by a database trigger as they are posted. This is for entries written with
    triggers disabled (``bench/generate.py``'s bulk load); it runs the same statement as migration 0015's
    backfill and is idempotent.
    """
    with connection.cursor() as cursor:
        cursor.execute(UNSETTLED_ENTRY_BACKFILL)
        return cursor.rowcount


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
        entry_ids = [item.ledger_entry_id for item in items if item.ledger_entry_id is not None]
        with connection.cursor() as cursor:
            cursor.execute(_DEQUEUE, [entry_ids])
            if cursor.rowcount != len(entry_ids):
                raise _EntriesTaken(f"{len(entry_ids) - cursor.rowcount} entries of the batch were already taken")
        payout = Payout.objects.create(batch=batch, merchant_id=merchant_id, amount=net)
        settlement_webhook(batch=batch, payout=payout, event_type="settlement.created")
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

#: Delays before a failed payout is sent again (counted from the failure); after the last, staff decide.
PAYOUT_RETRY_DELAYS: tuple[timedelta, ...] = (timedelta(hours=1), timedelta(hours=6), timedelta(hours=24))
DEFAULT_PAYOUT_RECONCILE_AFTER = timedelta(minutes=5)
PAYOUT_MESSAGE_MAX = 255
#: Failure code of a payout the provider refused as a request (nothing recorded under its key): not retried
#: automatically, staff fix the cause (usually the merchant's account) and use "retry now".
PAYOUT_REQUEST_REFUSED = "request_refused"
#: Failure code of a payout refused before sending because the merchant has no usable account number.
PAYOUT_ACCOUNT_MISSING = "payout_account_missing"


def _payout_key(payout: Payout) -> str:
    """The attempt's gateway key: ``po_<id>_<attempt>_<random>``.

    The random part keeps two databases that share a provider account (a production copy restored
    into staging) from ever sending the same key for different payouts; the key is stored before
    the call, so every resend and query of the attempt reuses it.
    """
    return f"po_{payout.pk}_{payout.attempts}_{secrets.token_hex(6)}"


def _payout_check(payout: Payout) -> None:
    """Refuse (``NotAllowed``) a payout that does not pay exactly its settled batch, or more than is owed.

    Only settled entries are ever paid out: the payout must equal its batch's net and the
    sum of its lines. The merchant's payable balance, less the other payouts already on
    their way, must cover it. The payout row is locked by the caller.
    """
    settled = SettlementItem.objects.filter(batch_id=payout.batch_id).aggregate(t=Sum("amount"))["t"] or ZERO
    if payout.amount != payout.batch.net_amount or payout.amount != settled:
        raise NotAllowed(
            _("Payout %(id)s does not match its settled batch; only settled entries are paid out.") % {"id": payout.pk},
            code="payout_unsettled",
        )
    if LedgerTransaction.objects.filter(idempotency_key=f"payout:{payout.pk}").exists():
        raise InvalidTransition(_("payout %(id)s is already posted; it cannot be paid twice") % {"id": payout.pk})
    owed = -account_balance(ledger_account_for(AccountKind.MERCHANT_PAYABLE, merchant=payout.merchant_id))
    on_the_way = (
        Payout.objects.filter(merchant_id=payout.merchant_id, status__in=PAYOUT_IN_FLIGHT)
        .exclude(pk=payout.pk)
        .aggregate(t=Sum("amount"))["t"]
        or ZERO
    )
    if payout.amount > owed - on_the_way:
        raise NotAllowed(
            _("The merchant is owed %(owed)s, less than payout %(id)s.") % {"owed": owed - on_the_way, "id": payout.pk},
            code="payout_exceeds_payable",
        )


def _payout_paid(payout: Payout, *, reference: str, actor: Actor, message: str = "") -> None:
    """Post and mark a locked payout paid, and tell the merchant (``settlement.paid``), in the caller's transaction."""
    post_payout(merchant=payout.merchant_id, payout_key=str(payout.pk), amount=payout.amount)
    payout.status = PayoutStatus.PAID
    payout.reference = (reference or "")[:64]
    payout.paid_by = actor if getattr(actor, "is_authenticated", False) else None
    payout.paid_at = timezone.now()
    payout.next_attempt_at = None
    payout.failure_code = ""
    payout.message = (message or "")[:PAYOUT_MESSAGE_MAX]
    payout.save(
        update_fields=["status", "reference", "paid_by", "paid_at", "next_attempt_at", "failure_code", "message"]
    )
    settlement_webhook(batch=payout.batch, payout=payout, event_type="settlement.paid")


def _payout_failed(payout: Payout, *, code: str, message: str, retry: bool) -> None:
    """Mark a locked payout failed (nothing posted), schedule its retry, tell the merchant."""
    now = timezone.now()
    payout.status = PayoutStatus.FAILED
    payout.failure_code = (code or "declined")[:32]
    payout.message = (message or "")[:PAYOUT_MESSAGE_MAX]
    index = max(payout.attempts, 1) - 1
    payout.next_attempt_at = now + PAYOUT_RETRY_DELAYS[index] if retry and index < len(PAYOUT_RETRY_DELAYS) else None
    payout.save(update_fields=["status", "attempts", "failure_code", "message", "next_attempt_at"])
    settlement_webhook(batch=payout.batch, payout=payout, event_type="settlement.payout_failed")


@transaction.atomic(durable=True)
def payout_mark_paid(*, actor: Actor, payout: Payout, reference: str = "") -> Payout:
    """Record that a batch's payout reached the merchant's bank outside the gateway (staff, "mark paid").

    Posts ``post_payout`` (key ``payout:<id>``) and sends ``settlement.paid``. Refused
    (nothing posted) for a payout already paid, for one on its way through the gateway
    (``payout_in_flight``: it may still land), for one whose amount is not its batch's
    settled net, and when the merchant's payable balance does not cover it. A pending or
    failed payout may be marked paid (the provider moved no money for it).
    """
    payout = Payout.objects.select_for_update().select_related("batch").get(pk=payout.pk)
    if payout.status == PayoutStatus.PAID:
        raise InvalidTransition(
            _("payout %(id)s is %(status)s; it cannot be paid") % {"id": payout.pk, "status": payout.status}
        )
    if payout.status in PAYOUT_IN_FLIGHT:
        raise NotAllowed(
            _("Payout %(id)s is being sent through the payment provider; wait for its outcome.") % {"id": payout.pk},
            code="payout_in_flight",
        )
    _payout_check(payout)
    _payout_paid(payout, reference=reference, actor=actor)
    return payout


@transaction.atomic(durable=True)
def payout_retry_now(*, actor: Actor, payout: Payout) -> Payout:
    """Staff: send a failed payout again at the next payout run (e.g. after the merchant fixed its account)."""
    payout = Payout.objects.select_for_update().get(pk=payout.pk)
    if payout.status != PayoutStatus.FAILED:
        raise InvalidTransition(
            _("payout %(id)s is %(status)s; only a failed payout can be retried")
            % {"id": payout.pk, "status": payout.status}
        )
    payout.next_attempt_at = timezone.now()
    payout.save(update_fields=["next_attempt_at"])
    logger.info("payout %s retry requested by %s", payout.pk, actor or "system")
    return payout


@dataclass(frozen=True)
class _Claimed:
    payout_id: int
    key: str
    account: str
    amount: Decimal


def _claim_payouts(*, now: datetime, limit: int, payout_ids: list[int] | None) -> list[_Claimed]:
    """Claim due payouts (new, or failed with a retry due): check each, give it the next attempt's key.

    ``SKIP LOCKED`` and the committed move to ``sending`` mean that of two runs at once
    each payout is claimed by one. A payout that fails the checks is marked failed
    (``payout_unsettled`` for good, ``payout_exceeds_payable`` retried): nothing is sent or posted.
    """
    claimed: list[_Claimed] = []
    with transaction.atomic():
        due = (
            Payout.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("batch", "merchant")
            .filter(Q(status=PayoutStatus.PENDING) | Q(status=PayoutStatus.FAILED, next_attempt_at__lte=now))
            .order_by("created_at", "id")
        )
        if payout_ids is not None:
            due = due.filter(pk__in=payout_ids)
        for payout in due[:limit]:
            try:
                _payout_check(payout)
            except DomainError as exc:
                # Not covered (a refund posted since the batch) may resolve: retried on the schedule. Not
                # matching the settled batch, or already posted, never does: failed for good, staff look.
                logger.error("payout %s refused: %s", payout.pk, exc.message)
                payout.attempts += 1  # counts towards the retry schedule, so a refusal does not repeat forever
                _payout_failed(payout, code=exc.code, message=exc.message, retry=exc.code == "payout_exceeds_payable")
                continue
            account = payout.merchant.settlement_account_number
            if not isinstance(account, str) or not account.strip():
                # The provider would refuse the request: nothing is sent; staff fix the account and retry.
                logger.error("payout %s refused: merchant %s has no account number", payout.pk, payout.merchant_id)
                payout.attempts += 1
                _payout_failed(
                    payout,
                    code=PAYOUT_ACCOUNT_MISSING,
                    message=_("The merchant has no settlement account number."),
                    retry=False,
                )
                continue
            payout.attempts += 1
            payout.gateway_key = _payout_key(payout)
            payout.status = PayoutStatus.SENDING
            payout.last_sent_at = now
            payout.next_attempt_at = None
            payout.save(update_fields=["attempts", "gateway_key", "status", "last_sent_at", "next_attempt_at"])
            claimed.append(
                _Claimed(payout.pk, payout.gateway_key, payout.merchant.settlement_account_number, payout.amount)
            )
    return claimed


def _send_payout(gateway: PaymentGateway, claimed: _Claimed) -> GatewayResult:
    """Send one payout attempt; never raises.

    A request the provider refuses (``GatewayRequestError``: a malformed account, a key it knows for
    another request) is looked up under its key: if the provider recorded nothing (``not_found``) no
    money moved and the payout fails with ``request_refused`` and no automatic retry, so staff can fix
    the cause and send it again; if it did record something, that result stands. Any other error
    leaves the outcome unknown (the reconcile job asks later).
    """
    try:
        return gateway.payout(claimed.key, claimed.account, claimed.amount)
    except GatewayRequestError as exc:
        logger.error("payout call %s refused by the provider: %s", claimed.key, exc)
        try:
            found = gateway.query(claimed.key)
        except Exception as query_exc:
            logger.exception("query for refused payout %s failed", claimed.key)
            return GatewayResult(
                outcome=ChargeOutcome.UNKNOWN, message=f"refused, query failed: {query_exc!r}"[:PAYOUT_MESSAGE_MAX]
            )
        if found.outcome == ChargeOutcome.NOT_FOUND:
            return GatewayResult(
                outcome=ChargeOutcome.DECLINED,
                decline_code=PAYOUT_REQUEST_REFUSED,
                message=f"provider refused the request: {exc}"[:PAYOUT_MESSAGE_MAX],
            )
        return found
    except Exception as exc:  # the outcome is unknown whatever else went wrong: we ask later
        logger.exception("payout call %s failed", claimed.key)
        return GatewayResult(outcome=ChargeOutcome.UNKNOWN, message=f"call failed: {exc!r}"[:PAYOUT_MESSAGE_MAX])


def payout_record(*, payout_id: int, key: str, result: GatewayResult) -> Payout:
    """Record the gateway's answer for the payout attempt ``key``; idempotent (a settled attempt is left alone).

    Succeeded → ledger ``post_payout`` (key ``payout:<id>``), ``paid``, ``settlement.paid``;
    declined → ``failed`` with a retry time (none for ``request_refused``), nothing posted,
    ``settlement.payout_failed``; unknown → ``unknown`` (the reconcile job asks again under the same key).
    A success for another amount than the payout's (the key was used elsewhere) is not trusted: the
    payout stays ``unknown`` and an error is logged for staff.
    """
    with transaction.atomic():
        payout = Payout.objects.select_for_update().select_related("batch").get(pk=payout_id)
        if payout.status not in PAYOUT_IN_FLIGHT or payout.gateway_key != key:
            return payout
        if result.outcome == ChargeOutcome.SUCCEEDED and result.amount is not None and result.amount != payout.amount:
            logger.error(
                "payout %s: provider reports %s paid under key %s, the payout is %s; left unknown for staff",
                payout.pk,
                result.amount,
                key,
                payout.amount,
            )
            payout.status = PayoutStatus.UNKNOWN
            payout.message = f"provider paid {result.amount} under this key, expected {payout.amount}"[
                :PAYOUT_MESSAGE_MAX
            ]
            payout.save(update_fields=["status", "message"])
        elif result.outcome == ChargeOutcome.SUCCEEDED:
            _payout_paid(payout, reference=result.reference or "", actor=None, message=result.message)
        elif result.outcome == ChargeOutcome.DECLINED:
            code = str(result.decline_code or "declined")
            _payout_failed(payout, code=code, message=result.message, retry=code != PAYOUT_REQUEST_REFUSED)
        else:
            payout.status = PayoutStatus.UNKNOWN
            payout.message = (result.message or "")[:PAYOUT_MESSAGE_MAX]
            payout.save(update_fields=["status", "message"])
    return payout


def payouts_send_due(
    *, gateway: PaymentGateway | None = None, limit: int = 200, payout_ids: list[int] | None = None
) -> dict[str, int]:
    """The payout job: send pending payouts and failed ones whose retry is due, each under a fixed key.

    The key (``po_<id>_<attempt>_<random>``) is committed before the gateway is called, and the
    call is made outside any transaction; the outcome is recorded by :func:`payout_record`.
    Safe to run twice and on several workers at once: each payout is claimed by one run,
    the provider pays once per key, and the ledger posts once per payout.
    """
    _refuse_inside_transaction()
    gateway = gateway or get_gateway()
    counts = {"sent": 0, "paid": 0, "failed": 0, "unknown": 0}
    for claimed in _claim_payouts(now=timezone.now(), limit=limit, payout_ids=payout_ids):
        payout = payout_record(payout_id=claimed.payout_id, key=claimed.key, result=_send_payout(gateway, claimed))
        counts["sent"] += 1
        counts[payout.status if payout.status in counts else "unknown"] += 1
    return counts


def payouts_reconcile(
    *,
    older_than: timedelta = DEFAULT_PAYOUT_RECONCILE_AFTER,
    gateway: PaymentGateway | None = None,
    limit: int = 200,
) -> dict[str, int]:
    """Settle payouts left ``sending`` (a crash after the claim) or ``unknown`` (timeout, lost response).

    Each, older than ``older_than`` so no request can still be landing, is looked up under
    its own key: a recorded result is recorded here; ``not_found`` means the provider never
    processed it, so it is sent again with the same key (paid at most once per key).
    """
    _refuse_inside_transaction()
    gateway = gateway or get_gateway()
    counts = {"checked": 0, "paid": 0, "failed": 0, "unknown": 0}
    rows = list(
        Payout.objects.filter(status__in=PAYOUT_IN_FLIGHT, last_sent_at__lte=timezone.now() - older_than)
        .select_related("merchant")
        .order_by("last_sent_at")[:limit]
    )
    for payout in rows:
        claimed = _Claimed(payout.pk, payout.gateway_key, payout.merchant.settlement_account_number, payout.amount)
        try:
            result = gateway.query(claimed.key)
        except Exception:
            logger.exception("query for payout %s failed", claimed.key)
            continue
        if result.outcome == ChargeOutcome.NOT_FOUND:
            Payout.objects.filter(pk=payout.pk, gateway_key=claimed.key).update(last_sent_at=timezone.now())
            result = _send_payout(gateway, claimed)
        payout = payout_record(payout_id=payout.pk, key=claimed.key, result=result)
        counts["checked"] += 1
        counts[payout.status if payout.status in counts else "unknown"] += 1
    return counts


def payouts_send_due_task() -> dict[str, int]:
    """django-q2 entry point of the payout job."""
    return payouts_send_due()


def payouts_reconcile_task() -> dict[str, int]:
    """django-q2 entry point of the payout reconciliation."""
    return payouts_reconcile()


# --------------------------------------------------------------------------- statements


def _fmt(value: Decimal) -> str:
    return f"{value:.2f}"


@dataclass(frozen=True)
class StatementLine:
    """One statement line with typed values; ``order_id`` None and ``kind`` "Total" on the total line."""

    order_id: int | None
    out_order_no: str
    occurred_at: datetime | None
    kind: str
    amounts: tuple[Decimal, Decimal, Decimal, Decimal, Decimal, Decimal]  # gross, fee, refund, adjustment, held, net

    @property
    def is_total(self) -> bool:
        return self.occurred_at is None


def statement_lines(batch: SettlementBatch) -> list[StatementLine]:
    """The statement's lines, shared by CSV and XLSX: one per settlement item, then the total line.

    Amounts from the merchant's side: fee, refund and held are shown as positive
    deductions (a released hold as a negative one), so every line has
    net = gross − fee − refund + adjustment − held.
    """
    lines: list[StatementLine] = []
    totals = [ZERO] * 6
    items = batch.items.select_related("order").order_by("occurred_at", "id")
    for item in items:
        gross = item.amount if item.kind == K.COMPLETION else ZERO
        fee = -item.amount if item.kind == K.FEE else ZERO
        refund = -item.amount if item.kind == K.REFUND else ZERO
        adjustment = item.amount if item.kind == K.ADJUSTMENT else ZERO
        held = -item.amount if item.kind in (K.HOLD, K.RELEASE) else ZERO
        values = (gross, fee, refund, adjustment, held, item.amount)
        totals = [a + b for a, b in zip(totals, values, strict=True)]
        lines.append(
            StatementLine(
                order_id=item.order_id,
                out_order_no=item.order.out_order_no if item.order else "",
                occurred_at=timezone.localtime(item.occurred_at),
                kind=str(K(item.kind).label),
                amounts=values,
            )
        )
    lines.append(StatementLine(None, "", None, _("Total"), tuple(totals)))  # type: ignore[arg-type]
    return lines


def statement_rows(batch: SettlementBatch) -> list[list[str]]:
    """The statement's lines as text (the CSV's rows): order id, merchant order no., time (Asia/Shanghai),
    type, gross, fee, refund, adjustment, held, net; then a total line."""
    return [
        [
            str(line.order_id or ""),
            safe_text_cell(line.out_order_no),
            line.occurred_at.strftime("%Y-%m-%d %H:%M") if line.occurred_at else "",
            safe_text_cell(line.kind),
            *(_fmt(v) for v in line.amounts),
        ]
        for line in statement_lines(batch)
    ]


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


XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_XLSX_AMOUNT_FORMAT = "#,##0.00;-#,##0.00"
_XLSX_TIME_FORMAT = "yyyy-mm-dd hh:mm"


def statement_xlsx(batch: SettlementBatch) -> bytes:
    """The batch's statement (对账单) as an Excel workbook, from exactly the CSV's lines.

    A header block (merchant, business day, cut-off, batch, payout, figures), then the
    table: the CSV's header row (bold, frozen), one row per line with amounts as numbers
    formatted ``#,##0.00`` and times as Beijing-time date cells, then the bold total line.
    Text is stored as Unicode, so Chinese headers and order numbers read correctly in Excel.
    """
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    merchant = batch.merchant
    payout = Payout.objects.filter(batch=batch).first()
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = _("Statement")[:31]
    bold = Font(bold=True)
    sheet.append([_("Settlement statement")])
    sheet["A1"].font = Font(bold=True, size=14)
    block: list[tuple[str, object, str | None]] = [
        (_("Merchant"), safe_text_cell(merchant), None),
        (_("Business day"), batch.business_date.isoformat(), None),
        (_("Entries up to"), timezone.localtime(batch.cutoff_at).replace(tzinfo=None), _XLSX_TIME_FORMAT),
        (_("Batch"), batch.pk, None),
        (_("Payout status"), str(PayoutStatus(payout.status).label) if payout else "", None),
        (_("Gross"), batch.gross_amount, _XLSX_AMOUNT_FORMAT),
        (_("Fees"), batch.fee_amount, _XLSX_AMOUNT_FORMAT),
        (_("Refunds"), batch.refund_amount, _XLSX_AMOUNT_FORMAT),
        (_("Adjustments"), batch.adjustment_amount, _XLSX_AMOUNT_FORMAT),
        (_("Held (disputes)"), batch.held_amount, _XLSX_AMOUNT_FORMAT),
        (_("Released holds"), batch.released_amount, _XLSX_AMOUNT_FORMAT),
        (_("Net"), batch.net_amount, _XLSX_AMOUNT_FORMAT),
    ]
    for label, value, number_format in block:
        sheet.append([label, value])
        row = sheet.max_row
        sheet.cell(row=row, column=1).font = bold
        if number_format:
            sheet.cell(row=row, column=2).number_format = number_format
    sheet.append([])
    sheet.append(statement_header())
    header_row = sheet.max_row
    for cell in sheet[header_row]:
        cell.font = bold
    sheet.freeze_panes = sheet.cell(row=header_row + 1, column=1)
    for line in statement_lines(batch):
        time_value = line.occurred_at.replace(tzinfo=None) if line.occurred_at else None
        # Amounts are written as numbers from the Decimals (exact to the cent); the format shows two places.
        # Text cells go through safe_text_cell: openpyxl stores a string starting with "=" as a formula.
        out_no, kind = safe_text_cell(line.out_order_no), safe_text_cell(line.kind)
        sheet.append([line.order_id, out_no, time_value, kind, *line.amounts])
        row = sheet.max_row
        sheet.cell(row=row, column=3).number_format = _XLSX_TIME_FORMAT
        for column in range(5, 11):
            sheet.cell(row=row, column=column).number_format = _XLSX_AMOUNT_FORMAT
        if line.is_total:
            for cell in sheet[row]:
                cell.font = bold
    for column, width in enumerate((10, 22, 17, 16, 12, 10, 10, 12, 10, 12), start=1):
        sheet.column_dimensions[get_column_letter(column)].width = width
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


#: Names the merchant portal imports (the portal offers the same two files as the API).
settlement_statement_csv = statement_csv
settlement_statement_xlsx = statement_xlsx

STATEMENT_FORMATS = ("csv", "xlsx")


def statement_filename(batch: SettlementBatch, fmt: str = "csv") -> str:
    return f"statement-{batch.merchant_id}-{batch.business_date:%Y%m%d}.{fmt}"


@dataclass(frozen=True)
class StatementFile:
    content: bytes
    content_type: str
    filename: str


def statement_file(batch: SettlementBatch, fmt: str = "csv") -> StatementFile:
    """The statement in ``fmt`` (``csv`` or ``xlsx``) with its content type and download name."""
    if fmt == "xlsx":
        return StatementFile(statement_xlsx(batch), XLSX_CONTENT_TYPE, statement_filename(batch, "xlsx"))
    if fmt == "csv":
        return StatementFile(statement_csv(batch), "text/csv; charset=utf-8", statement_filename(batch, "csv"))
    raise ValueError(f"unknown statement format {fmt!r}")


# --------------------------------------------------------------------------- selectors (merchant-scoped)


def settlement_batches_for_merchant(*, merchant: object, livemode: bool | None = None) -> QuerySet[SettlementBatch]:
    """The merchant's own settlement batches, with their payouts (one query per page).

    ``livemode`` (the API key's mode) keeps one mode's batches, by the rule the webhooks use
    (``bnpl.webhooks.settlement_livemode``): a batch is test-mode exactly when it has order lines
    and every one of them belongs to a sandbox consumer. ``None`` (the portal) keeps both.
    """
    batches = SettlementBatch.objects.filter(merchant=merchant).select_related("payout")
    if livemode is None:
        return batches
    order_lines = SettlementItem.objects.filter(batch=OuterRef("pk"), order__isnull=False)
    test_mode = Exists(order_lines) & ~Exists(order_lines.filter(order__consumer__is_sandbox=False))
    return batches.exclude(test_mode) if livemode else batches.filter(test_mode)


def settlement_batch_get_for_merchant(*, merchant: object, batch_id: object) -> SettlementBatch:
    """One batch of this merchant; another merchant's id raises ``DoesNotExist`` like a missing one."""
    return settlement_batches_for_merchant(merchant=merchant).get(pk=int(batch_id))  # type: ignore[call-overload]
