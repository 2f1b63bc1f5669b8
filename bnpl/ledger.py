"""Posting to the double-entry ledger (docs/ledger.md).

``ledger_post`` is the only writer of ledger rows. It checks in Python what the
database checks again at COMMIT (entries sum to zero, at least two of them), and it
makes every posting idempotent: the ledger transaction's ``idempotency_key`` is
derived from the business fact, so recording the same fact twice (a task delivered
twice, two workers racing) returns the first posting instead of a second one.

The ``post_*`` helpers are the documented postings of each business fact; the
services of the charging, refund, guarantee and settlement flows call them inside
their own database transaction, after locking the order they are about to change.
None of them opens a durable transaction, so they always join the caller's.

Sign convention: a debit is a positive amount, a credit a negative one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from decimal import Decimal

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, DecimalField, Q, Sum, Value
from django.db.models.functions import Coalesce
from django.utils.translation import gettext as _

from bnpl.exceptions import DomainError
from bnpl.models import CreditOrder, LedgerAccount, LedgerEntry, LedgerTransaction
from bnpl.models.ledger import AccountKind, TransactionKind
from bnpl.money import ZERO, MoneyError, parse_money
from consumers.models import Consumer
from merchants.models import Merchant

PER_CONSUMER_KINDS = frozenset({AccountKind.CONSUMER_RECEIVABLE})
PER_MERCHANT_KINDS = frozenset({AccountKind.MERCHANT_PAYABLE})

# The database objects migration 0003 installs (0020 left the balance check to the transactions' trigger), and the
# settlement queue's (0015, a missing one would leave new entries unsettled); ledger_check() reports any that is
# missing.
LEDGER_TRIGGERS = (
    ("bnpl_ledgertransaction", "bnpl_ledgertransaction_append_only"),
    ("bnpl_ledgerentry", "bnpl_ledgerentry_append_only"),
    ("bnpl_ledgertransaction", "bnpl_ledgertransaction_stamp"),
    ("bnpl_ledgerentry", "bnpl_ledgerentry_stamp"),
    ("bnpl_ledgertransaction", "bnpl_ledgertransaction_balanced"),
    ("bnpl_ledgerentry", "bnpl_ledgerentry_settlement_queue"),
)


class LedgerError(DomainError):
    """A posting the ledger refuses (a programming error in the caller, not user input)."""

    code = "ledger_error"


class UnbalancedPosting(LedgerError):
    """The entries of a posting do not sum to zero, or there are fewer than two."""

    code = "ledger_unbalanced"


class PostingConflict(LedgerError):
    """An idempotency key already names a posting with different entries."""

    code = "ledger_idempotency_conflict"


Entry = tuple[LedgerAccount, Decimal]


def _pk(party: object) -> int | None:
    if party is None:
        return None
    return party if isinstance(party, int) else party.pk  # type: ignore[attr-defined]


def ledger_account_code(kind: str, *, consumer_id: int | None = None, merchant_id: int | None = None) -> str:
    """The stable code of an account: ``consumer_receivable:c:12``, ``merchant_payable:m:3``, ``bad_debt``."""
    if kind in PER_CONSUMER_KINDS:
        return f"{kind}:c:{consumer_id}"
    if kind in PER_MERCHANT_KINDS:
        return f"{kind}:m:{merchant_id}"
    return str(kind)


def ledger_account_for(
    kind: str, *, consumer: Consumer | int | None = None, merchant: Merchant | int | None = None
) -> LedgerAccount:
    """The account of ``kind`` (for that consumer or merchant), created on first use.

    Race-safe: ``get_or_create`` inserts in a savepoint and, when another process
    created the same code in the meantime, reads the winner's row (unique ``code``).
    Accepts model instances or primary keys so posting code need not load parties.
    """
    if kind not in AccountKind.values:
        raise LedgerError(_("Unknown ledger account kind %(kind)s.") % {"kind": kind})
    consumer_id, merchant_id = _pk(consumer), _pk(merchant)
    if kind in PER_CONSUMER_KINDS:
        if consumer_id is None or merchant_id is not None:
            raise LedgerError(_("A %(kind)s account belongs to exactly one consumer.") % {"kind": kind})
    elif kind in PER_MERCHANT_KINDS:
        if merchant_id is None or consumer_id is not None:
            raise LedgerError(_("A %(kind)s account belongs to exactly one merchant.") % {"kind": kind})
    elif consumer_id is not None or merchant_id is not None:
        raise LedgerError(_("A %(kind)s account is a platform account, not a party's.") % {"kind": kind})
    code = ledger_account_code(kind, consumer_id=consumer_id, merchant_id=merchant_id)
    account, _created = LedgerAccount.objects.get_or_create(
        code=code, defaults={"kind": kind, "consumer_id": consumer_id, "merchant_id": merchant_id}
    )
    return account


def _normalise(entries: Iterable[Entry]) -> list[Entry]:
    normalised: list[Entry] = []
    for account, amount in entries:
        if account.pk is None:
            raise LedgerError(_("A ledger entry names an account that is not saved."))
        try:
            value = parse_money(amount, allow_zero=False, allow_negative=True)
        except MoneyError as exc:
            raise LedgerError(
                _("Ledger amount %(amount)s refused: %(reason)s") % {"amount": amount, "reason": exc}
            ) from exc
        normalised.append((account, value))
    if len(normalised) < 2:
        raise UnbalancedPosting(_("A ledger transaction needs at least two entries."))
    total = sum((amount for _account, amount in normalised), ZERO)
    if total != ZERO:
        raise UnbalancedPosting(
            _("The entries of a ledger transaction must sum to zero; these sum to %(total)s.") % {"total": total}
        )
    return normalised


def _same_posting(txn: LedgerTransaction, *, kind: str, order_id: int | None, entries: list[Entry]) -> bool:
    stored = Counter(txn.entries.values_list("account_id", "amount"))
    wanted = Counter((account.pk, amount) for account, amount in entries)
    return txn.kind == kind and txn.order_id == order_id and stored == wanted


def ledger_post(
    *,
    kind: str,
    idempotency_key: str,
    entries: list[Entry],
    order: CreditOrder | None = None,
    description: str = "",
) -> tuple[LedgerTransaction, bool]:
    """Post one balanced ledger transaction; returns ``(transaction, created)``.

    A replay with the same ``idempotency_key`` returns the stored transaction with
    ``created`` False and writes nothing; a replay whose kind, order or entries differ
    raises :class:`PostingConflict`, because one key must name one fact. Races on the
    key are settled by its unique constraint: the insert runs in a savepoint, and the
    loser (which waits for the winner to commit) reads the winner's posting.
    """
    if kind not in TransactionKind.values:
        raise LedgerError(_("Unknown ledger transaction kind %(kind)s.") % {"kind": kind})
    if not idempotency_key:
        raise LedgerError(_("A ledger transaction needs an idempotency key."))
    normalised = _normalise(entries)
    order_id = order.pk if order is not None else None
    with transaction.atomic():
        try:
            with transaction.atomic():
                txn = LedgerTransaction.objects.create(
                    kind=kind, order_id=order_id, idempotency_key=idempotency_key, description=description[:255]
                )
        except IntegrityError:
            existing = LedgerTransaction.objects.filter(idempotency_key=idempotency_key).first()
            if existing is None:
                raise
            if not _same_posting(existing, kind=kind, order_id=order_id, entries=normalised):
                raise PostingConflict(
                    _("Ledger key %(key)s was already posted with different entries.") % {"key": idempotency_key}
                ) from None
            return existing, False
        LedgerEntry.objects.bulk_create(
            [LedgerEntry(transaction=txn, account=account, amount=amount) for account, amount in normalised]
        )
    return txn, True


def account_balance(account: LedgerAccount) -> Decimal:
    """The signed balance of an account: Σ of its entries (debit-normal accounts > 0, credit-normal < 0)."""
    total = LedgerEntry.objects.filter(account=account).aggregate(total=Sum("amount"))["total"]
    return (total or ZERO).quantize(ZERO)


def order_account_balance(order: CreditOrder, kind: str) -> Decimal:
    """Σ of the entries of ``order``'s postings on accounts of ``kind`` (signed, as in ``account_balance``)."""
    total = LedgerEntry.objects.filter(transaction__order=order, account__kind=kind).aggregate(total=Sum("amount"))[
        "total"
    ]
    return (total or ZERO).quantize(ZERO)


def _positive(amount: Decimal | str | int, what: str) -> Decimal:
    try:
        return parse_money(amount, allow_zero=False)
    except MoneyError as exc:
        raise LedgerError(
            _("The %(what)s amount must be positive: %(reason)s") % {"what": what, "reason": exc}
        ) from exc


def _receivable(order: CreditOrder) -> LedgerAccount:
    if order.consumer_id is None:
        raise LedgerError(_("Order %(id)s has no consumer to owe it.") % {"id": order.pk})
    return ledger_account_for(AccountKind.CONSUMER_RECEIVABLE, consumer=order.consumer_id)


def _payable(merchant: Merchant | int) -> LedgerAccount:
    return ledger_account_for(AccountKind.MERCHANT_PAYABLE, merchant=merchant)


def _platform(kind: str) -> LedgerAccount:
    return ledger_account_for(kind)


def post_completion(order: CreditOrder, *, amount: Decimal | None = None) -> tuple[LedgerTransaction, bool]:
    """Completion: the consumer now owes the bill and we owe the merchant the gross amount.

    Dr consumer receivable / Cr merchant payable, ``amount`` (default ``order.amount_due``).
    Key ``completion:<order id>``: an order is completed once. A ¥0 bill posts nothing;
    callers skip it.
    """
    value = _positive(order.amount_due if amount is None else amount, "completion")
    return ledger_post(
        kind=TransactionKind.COMPLETION,
        idempotency_key=f"completion:{order.pk}",
        order=order,
        entries=[(_receivable(order), value), (_payable(order.merchant_id), -value)],
        description=f"order {order.pk} completed",
    )


def post_fee(order: CreditOrder, *, fee_amount: Decimal) -> tuple[LedgerTransaction, bool]:
    """Platform fee on an order: Dr merchant payable / Cr platform fee revenue.

    Key ``fee:<order id>``: one fee per order (a refund does not return it).
    """
    value = _positive(fee_amount, "fee")
    return ledger_post(
        kind=TransactionKind.FEE,
        idempotency_key=f"fee:{order.pk}",
        order=order,
        entries=[(_payable(order.merchant_id), value), (_platform(AccountKind.PLATFORM_FEE_REVENUE), -value)],
        description=f"fee on order {order.pk}",
    )


def post_charge(order: CreditOrder, *, attempt_key: str, amount: Decimal) -> tuple[LedgerTransaction, bool]:
    """A successful charge: the consumer's money arrives in clearing and settles the receivable.

    Dr payment clearing / Cr consumer receivable, key ``charge:<attempt key>``.
    When the platform had already advanced the merchant's money for this order
    (``post_guarantee``), the advance is repaid out of the charge in a second posting,
    ``guarantee_recovery:<attempt key>``: Dr guarantee advances / Cr payment clearing,
    for at most what is still advanced. Both are written in the caller's transaction.
    """
    value = _positive(amount, "charge")
    with transaction.atomic():
        txn, created = ledger_post(
            kind=TransactionKind.CHARGE,
            idempotency_key=f"charge:{attempt_key}",
            order=order,
            entries=[(_platform(AccountKind.PAYMENT_CLEARING), value), (_receivable(order), -value)],
            description=f"charge of order {order.pk}",
        )
        if created:
            # Credit-normal: what is still advanced for this order is minus its balance.
            advanced = -order_account_balance(order, AccountKind.GUARANTEE_ADVANCES)
            recovered = min(advanced, value)
            if recovered > ZERO:
                ledger_post(
                    kind=TransactionKind.GUARANTEE,
                    idempotency_key=f"guarantee_recovery:{attempt_key}",
                    order=order,
                    entries=[
                        (_platform(AccountKind.GUARANTEE_ADVANCES), recovered),
                        (_platform(AccountKind.PAYMENT_CLEARING), -recovered),
                    ],
                    description=f"guarantee advance on order {order.pk} repaid by the consumer",
                )
    return txn, created


def post_refund(order: CreditOrder, *, refund_key: str, amount: Decimal) -> tuple[LedgerTransaction, bool]:
    """A refund to the consumer after the charge, borne by the merchant.

    Dr merchant payable / Cr payment clearing, key ``refund:<refund key>``. This is
    the sum of reversing the completion (Dr payable / Cr receivable) and reversing
    the charge (Dr receivable / Cr clearing) for the refunded amount; the receivable
    legs cancel, so only the net two entries are written.
    """
    value = _positive(amount, "refund")
    return ledger_post(
        kind=TransactionKind.REFUND,
        idempotency_key=f"refund:{refund_key}",
        order=order,
        entries=[(_payable(order.merchant_id), value), (_platform(AccountKind.PAYMENT_CLEARING), -value)],
        description=f"refund on order {order.pk}",
    )


def post_guarantee(order: CreditOrder, *, amount: Decimal | None = None) -> tuple[LedgerTransaction, bool]:
    """Platform guarantee (代偿): the platform funds the merchant's money while the consumer still owes.

    Dr payment clearing / Cr guarantee advances, ``amount`` (default ``order.amount_due``),
    key ``guarantee:<order id>``. The consumer receivable is untouched (collection
    goes on); the merchant payable is paid by the ordinary payout. The consumer's later
    charge repays the advance (see ``post_charge``); a write-off leaves it as the
    platform's loss.
    """
    value = _positive(order.amount_due if amount is None else amount, "guarantee")
    return ledger_post(
        kind=TransactionKind.GUARANTEE,
        idempotency_key=f"guarantee:{order.pk}",
        order=order,
        entries=[(_platform(AccountKind.PAYMENT_CLEARING), value), (_platform(AccountKind.GUARANTEE_ADVANCES), -value)],
        description=f"guarantee advance for order {order.pk}",
    )


def post_payout(*, merchant: Merchant | int, payout_key: str, amount: Decimal) -> tuple[LedgerTransaction, bool]:
    """A payout to a merchant's bank account: Dr merchant payable / Cr payment clearing.

    Key ``payout:<payout key>`` (one posting per payout record). Not tied to one order:
    a payout settles a batch.
    """
    value = _positive(amount, "payout")
    return ledger_post(
        kind=TransactionKind.PAYOUT,
        idempotency_key=f"payout:{payout_key}",
        entries=[(_payable(merchant), value), (_platform(AccountKind.PAYMENT_CLEARING), -value)],
        description=f"payout {payout_key}",
    )


def post_write_off(order: CreditOrder, *, amount: Decimal | None = None) -> tuple[LedgerTransaction, bool]:
    """Write-off: what the consumer still owes on the order becomes bad debt.

    Dr bad debt / Cr consumer receivable, ``amount`` (default: the order's outstanding
    receivable in the ledger), key ``write_off:<order id>``.
    """
    if amount is None:
        amount = order_account_balance(order, AccountKind.CONSUMER_RECEIVABLE)
    value = _positive(amount, "write-off")
    return ledger_post(
        kind=TransactionKind.WRITE_OFF,
        idempotency_key=f"write_off:{order.pk}",
        order=order,
        entries=[(_platform(AccountKind.BAD_DEBT), value), (_receivable(order), -value)],
        description=f"order {order.pk} written off",
    )


def post_amount_reduction(
    order: CreditOrder, *, reduction_key: str, amount: Decimal, description: str = ""
) -> tuple[LedgerTransaction, bool]:
    """Before the charge, less is owed: the merchant lowered the amount or was paid elsewhere.

    Reverses (part of) the completion: Dr merchant payable / Cr consumer receivable,
    kind ``adjustment``, key ``adjustment:<reduction key>``.
    """
    value = _positive(amount, "reduction")
    return ledger_post(
        kind=TransactionKind.ADJUSTMENT,
        idempotency_key=f"adjustment:{reduction_key}",
        order=order,
        entries=[(_payable(order.merchant_id), value), (_receivable(order), -value)],
        description=description or f"amount of order {order.pk} reduced",
    )


def ledger_check() -> list[str]:
    """Problems found in the ledger (empty when sound): for tests and the admin's health check.

    Reports transactions that are unbalanced or have fewer than two entries (which
    the triggers should make impossible), and any ledger trigger that is missing.
    """
    problems: list[str] = []
    zero = Value(ZERO, output_field=DecimalField(max_digits=14, decimal_places=2))
    bad = (
        LedgerTransaction.objects.annotate(total=Coalesce(Sum("entries__amount"), zero), n=Count("entries"))
        .filter(Q(n__lt=2) | ~Q(total=ZERO))
        .order_by("id")
        .values_list("id", "idempotency_key", "total", "n")
    )
    for txn_id, key, total, n in bad:
        problems.append(f"ledger transaction {txn_id} ({key}) has {n} entries summing to {total}")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE NOT t.tgisinternal AND t.tgenabled <> 'D' "
            "AND c.relname IN ('bnpl_ledgerentry', 'bnpl_ledgertransaction')"
        )
        present = set(cursor.fetchall())
    for table, trigger in LEDGER_TRIGGERS:
        if (table, trigger) not in present:
            problems.append(f"trigger {trigger} on {table} is missing or disabled")
    return problems
