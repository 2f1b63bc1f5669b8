"""The double-entry ledger: balanced, append-only, idempotent postings (bnpl/ledger.py, migration 0003)."""

from __future__ import annotations

import itertools
import threading
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from bnpl.choices import OrderStatus
from bnpl.ledger import (
    LedgerError,
    PostingConflict,
    UnbalancedPosting,
    account_balance,
    ledger_account_for,
    ledger_check,
    ledger_post,
    order_account_balance,
    post_amount_reduction,
    post_charge,
    post_completion,
    post_fee,
    post_guarantee,
    post_payout,
    post_refund,
    post_write_off,
)
from bnpl.models import CreditOrder, LedgerAccount, LedgerEntry, LedgerTransaction
from bnpl.models.ledger import AccountKind, NormalSide, TransactionKind
from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory

pytestmark = pytest.mark.django_db

D = Decimal
K = AccountKind


_order_numbers = itertools.count(1)


def make_order(*, merchant=None, consumer=None, amount_due="100.00") -> CreditOrder:
    """A completed order built directly (the ledger does not care how it got there)."""
    merchant = merchant or MerchantFactory()
    consumer = consumer or ConsumerFactory()
    listing = ListingFactory(merchant=merchant)
    return CreditOrder.objects.create(
        merchant=merchant,
        listing=listing,
        consumer=consumer,
        out_order_no=f"L{next(_order_numbers):06d}",
        title="充电",
        scenario=listing.scenario,
        confirm_mode=listing.confirm_mode,
        pricing_rule=listing.pricing_rule,
        status=OrderStatus.COMPLETED,
        max_amount=D("500.00"),
        amount_due=D(amount_due),
        completed_at=timezone.now(),
        due_at=timezone.now(),
    )


def balances(order: CreditOrder) -> dict[str, Decimal]:
    """Balances of every account an order touches, by kind (platform accounts are platform-wide)."""
    return {
        K.CONSUMER_RECEIVABLE: account_balance(ledger_account_for(K.CONSUMER_RECEIVABLE, consumer=order.consumer_id)),
        K.MERCHANT_PAYABLE: account_balance(ledger_account_for(K.MERCHANT_PAYABLE, merchant=order.merchant_id)),
        K.PLATFORM_FEE_REVENUE: account_balance(ledger_account_for(K.PLATFORM_FEE_REVENUE)),
        K.PAYMENT_CLEARING: account_balance(ledger_account_for(K.PAYMENT_CLEARING)),
        K.GUARANTEE_ADVANCES: account_balance(ledger_account_for(K.GUARANTEE_ADVANCES)),
        K.BAD_DEBT: account_balance(ledger_account_for(K.BAD_DEBT)),
    }


def expect(**values: str) -> dict[str, Decimal]:
    result = {kind: D("0.00") for kind in K.values}
    result.update({kind: D(v) for kind, v in values.items()})
    return result


def run_deferred_checks() -> None:
    """Fire the deferred balance triggers now, as COMMIT would (the test transaction never commits;
    Django's teardown runs the same check again)."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def entries_of(txn: LedgerTransaction) -> list[tuple[str, Decimal]]:
    return sorted((e.account.code, e.amount) for e in txn.entries.select_related("account"))


# --- accounts ---------------------------------------------------------------------------------------


def test_account_for_creates_each_account_once_with_its_code(consumer, merchant):
    receivable = ledger_account_for(K.CONSUMER_RECEIVABLE, consumer=consumer)
    again = ledger_account_for(K.CONSUMER_RECEIVABLE, consumer=consumer.pk)
    payable = ledger_account_for(K.MERCHANT_PAYABLE, merchant=merchant)
    clearing = ledger_account_for(K.PAYMENT_CLEARING)

    assert again.pk == receivable.pk
    assert receivable.code == f"consumer_receivable:c:{consumer.pk}"
    assert receivable.consumer_id == consumer.pk
    assert receivable.normal_side == NormalSide.DEBIT
    assert payable.code == f"merchant_payable:m:{merchant.pk}"
    assert payable.normal_side == NormalSide.CREDIT
    assert clearing.code == "payment_clearing"
    assert clearing.consumer_id is None
    assert clearing.merchant_id is None
    assert LedgerAccount.objects.count() == 3


def test_account_for_refuses_a_party_that_does_not_match_the_kind(consumer, merchant):
    with pytest.raises(LedgerError):
        ledger_account_for(K.CONSUMER_RECEIVABLE)
    with pytest.raises(LedgerError):
        ledger_account_for(K.MERCHANT_PAYABLE, consumer=consumer)
    with pytest.raises(LedgerError):
        ledger_account_for(K.BAD_DEBT, merchant=merchant)
    with pytest.raises(LedgerError):
        ledger_account_for("cash_in_hand")
    assert LedgerAccount.objects.count() == 0


def test_account_party_must_match_kind_in_the_database(consumer):
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerAccount.objects.create(code="x", kind=K.PAYMENT_CLEARING, consumer=consumer)
    assert LedgerAccount.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_account_for_concurrent_first_use_creates_one_account():
    consumer = ConsumerFactory()
    barrier = threading.Barrier(8)
    ids: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            ids.append(ledger_account_for(K.CONSUMER_RECEIVABLE, consumer=consumer.pk).pk)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert len(ids) == 8
    assert len(set(ids)) == 1
    assert LedgerAccount.objects.filter(kind=K.CONSUMER_RECEIVABLE).count() == 1


# --- ledger_post ----------------------------------------------------------------------------------


def test_post_writes_a_balanced_transaction(consumer, merchant):
    receivable = ledger_account_for(K.CONSUMER_RECEIVABLE, consumer=consumer)
    payable = ledger_account_for(K.MERCHANT_PAYABLE, merchant=merchant)

    txn, created = ledger_post(
        kind=TransactionKind.ADJUSTMENT,
        idempotency_key="adj:1",
        entries=[(receivable, D("12.50")), (payable, D("-12.50"))],
        description="test",
    )
    run_deferred_checks()

    assert created is True
    assert txn.kind == TransactionKind.ADJUSTMENT
    assert txn.created_at is not None
    assert entries_of(txn) == sorted([(receivable.code, D("12.50")), (payable.code, D("-12.50"))])
    assert LedgerEntry.objects.count() == 2
    assert ledger_check() == []


@pytest.mark.parametrize(
    "amounts",
    [
        [D("10.00"), D("-9.99")],  # unbalanced
        [D("10.00")],  # a single entry
        [D("10.00"), D("0.00"), D("-10.00")],  # a zero entry
        [D("10.005"), D("-10.005")],  # sub-fen
        [10.0, -10.0],  # floats
    ],
)
def test_post_refuses_a_malformed_posting_and_writes_nothing(consumer, merchant, amounts):
    accounts = [
        ledger_account_for(K.CONSUMER_RECEIVABLE, consumer=consumer),
        ledger_account_for(K.MERCHANT_PAYABLE, merchant=merchant),
        ledger_account_for(K.PAYMENT_CLEARING),
    ]

    with pytest.raises(LedgerError):
        ledger_post(
            kind=TransactionKind.ADJUSTMENT,
            idempotency_key="adj:bad",
            entries=list(zip(accounts, amounts, strict=False)),
        )

    assert LedgerTransaction.objects.count() == 0
    assert LedgerEntry.objects.count() == 0


def test_post_unbalanced_names_the_sum(consumer, merchant):
    receivable = ledger_account_for(K.CONSUMER_RECEIVABLE, consumer=consumer)
    payable = ledger_account_for(K.MERCHANT_PAYABLE, merchant=merchant)
    with pytest.raises(UnbalancedPosting, match=r"sum to 0\.01"):
        ledger_post(kind="charge", idempotency_key="k", entries=[(receivable, D("1.01")), (payable, D("-1.00"))])


def test_post_replay_of_the_same_key_returns_the_first_posting(consumer, merchant):
    receivable = ledger_account_for(K.CONSUMER_RECEIVABLE, consumer=consumer)
    payable = ledger_account_for(K.MERCHANT_PAYABLE, merchant=merchant)
    entries = [(receivable, D("5.00")), (payable, D("-5.00"))]

    first, created_first = ledger_post(kind=TransactionKind.ADJUSTMENT, idempotency_key="adj:r", entries=entries)
    replay, created_replay = ledger_post(kind=TransactionKind.ADJUSTMENT, idempotency_key="adj:r", entries=entries)

    assert created_first is True
    assert created_replay is False
    assert replay.pk == first.pk
    assert LedgerTransaction.objects.count() == 1
    assert LedgerEntry.objects.count() == 2
    assert account_balance(receivable) == D("5.00")


def test_post_replay_with_different_entries_is_refused(consumer, merchant):
    receivable = ledger_account_for(K.CONSUMER_RECEIVABLE, consumer=consumer)
    payable = ledger_account_for(K.MERCHANT_PAYABLE, merchant=merchant)
    ledger_post(kind="adjustment", idempotency_key="adj:c", entries=[(receivable, D("5.00")), (payable, D("-5.00"))])

    with pytest.raises(PostingConflict):
        ledger_post(
            kind="adjustment", idempotency_key="adj:c", entries=[(receivable, D("6.00")), (payable, D("-6.00"))]
        )
    with pytest.raises(PostingConflict):
        ledger_post(kind="fee", idempotency_key="adj:c", entries=[(receivable, D("5.00")), (payable, D("-5.00"))])

    assert LedgerTransaction.objects.count() == 1
    assert LedgerEntry.objects.count() == 2
    assert account_balance(receivable) == D("5.00")


@pytest.mark.django_db(transaction=True)
def test_post_same_key_from_many_threads_posts_once():
    consumer, merchant = ConsumerFactory(), MerchantFactory()
    receivable = ledger_account_for(K.CONSUMER_RECEIVABLE, consumer=consumer)
    payable = ledger_account_for(K.MERCHANT_PAYABLE, merchant=merchant)
    barrier = threading.Barrier(10)
    results: list[tuple[int, bool]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            with transaction.atomic():
                txn, created = ledger_post(
                    kind=TransactionKind.CHARGE,
                    idempotency_key="charge:race",
                    entries=[(receivable, D("-7.00")), (payable, D("7.00"))],
                )
            results.append((txn.pk, created))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert len(results) == 10
    assert len({pk for pk, _created in results}) == 1
    assert sum(created for _pk, created in results) == 1
    assert LedgerTransaction.objects.count() == 1
    assert LedgerEntry.objects.count() == 2
    assert account_balance(receivable) == D("-7.00")


# --- database-enforced invariants -----------------------------------------------------------------


def _raw_transaction(cursor, key: str) -> int:
    cursor.execute(
        "INSERT INTO bnpl_ledgertransaction (kind, idempotency_key, description) VALUES ('adjustment', %s, '') "
        "RETURNING id",
        [key],
    )
    return cursor.fetchone()[0]


def _raw_entry(cursor, txn_id: int, account_id: int, amount: str) -> None:
    cursor.execute(
        "INSERT INTO bnpl_ledgerentry (transaction_id, account_id, amount) VALUES (%s, %s, %s)",
        [txn_id, account_id, amount],
    )


@pytest.mark.django_db(transaction=True)
def test_unbalanced_raw_sql_posting_fails_at_commit():
    a = ledger_account_for(K.PAYMENT_CLEARING)
    b = ledger_account_for(K.BAD_DEBT)

    with pytest.raises(IntegrityError, match="unbalanced"), transaction.atomic(), connection.cursor() as cursor:
        txn_id = _raw_transaction(cursor, "raw:unbalanced")
        _raw_entry(cursor, txn_id, a.pk, "10.00")
        _raw_entry(cursor, txn_id, b.pk, "-9.00")
        # Inside the transaction nothing has been checked yet: the check is deferred to COMMIT.

    assert LedgerTransaction.objects.count() == 0
    assert LedgerEntry.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_raw_sql_transaction_with_one_entry_or_none_fails_at_commit():
    a = ledger_account_for(K.PAYMENT_CLEARING)

    with pytest.raises(IntegrityError, match="at least two"), transaction.atomic(), connection.cursor() as cursor:
        txn_id = _raw_transaction(cursor, "raw:one")
        _raw_entry(cursor, txn_id, a.pk, "10.00")
    with pytest.raises(IntegrityError, match="at least two"), transaction.atomic(), connection.cursor() as cursor:
        _raw_transaction(cursor, "raw:none")

    assert LedgerTransaction.objects.count() == 0
    assert LedgerEntry.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_balanced_raw_sql_posting_commits():
    a = ledger_account_for(K.PAYMENT_CLEARING)
    b = ledger_account_for(K.BAD_DEBT)

    with transaction.atomic(), connection.cursor() as cursor:
        txn_id = _raw_transaction(cursor, "raw:ok")
        _raw_entry(cursor, txn_id, a.pk, "10.00")
        _raw_entry(cursor, txn_id, b.pk, "-4.00")
        _raw_entry(cursor, txn_id, b.pk, "-6.00")

    assert LedgerEntry.objects.filter(transaction_id=txn_id).count() == 3
    assert account_balance(a) == D("10.00")
    assert ledger_check() == []


def test_balance_checks_run_per_statement_when_constraints_are_immediate():
    # SET CONSTRAINTS ALL IMMEDIATE (what Django's test teardown runs) fires the checks
    # at once: a ledger transaction row is refused before its entries can follow.
    with pytest.raises(IntegrityError, match="has 0 entries"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        _raw_transaction(cursor, "raw:imm")
    assert LedgerTransaction.objects.count() == 0


def test_entries_cannot_be_added_once_the_balance_was_checked_early():
    """SET CONSTRAINTS ALL IMMEDIATE runs the pending balance checks at once: a posting balanced then cannot take
    an entry that would unbalance it at COMMIT, since the check would not run again."""
    a = ledger_account_for(K.PAYMENT_CLEARING)
    b = ledger_account_for(K.BAD_DEBT)
    with pytest.raises(IntegrityError, match="checked for balance"), transaction.atomic(), connection.cursor() as c:
        txn_id = _raw_transaction(c, "raw:early")
        _raw_entry(c, txn_id, a.pk, "10.00")
        _raw_entry(c, txn_id, b.pk, "-10.00")
        c.execute("SET CONSTRAINTS ALL IMMEDIATE")  # checked: balanced
        c.execute("SET CONSTRAINTS ALL DEFERRED")
        _raw_entry(c, txn_id, a.pk, "99.00")
    assert LedgerTransaction.objects.filter(idempotency_key="raw:early").count() == 0


def test_a_posting_after_an_early_check_is_checked_at_commit_as_usual():
    """The early check closes the transactions it checked, not the ones posted after it: those take their entries
    and are checked in turn."""
    a = ledger_account_for(K.PAYMENT_CLEARING)
    b = ledger_account_for(K.BAD_DEBT)
    with pytest.raises(IntegrityError, match="unbalanced"), transaction.atomic(), connection.cursor() as cursor:
        first = _raw_transaction(cursor, "raw:first")
        _raw_entry(cursor, first, a.pk, "3.00")
        _raw_entry(cursor, first, b.pk, "-3.00")
        run_deferred_checks()
        second = _raw_transaction(cursor, "raw:second")
        _raw_entry(cursor, second, a.pk, "4.00")
        _raw_entry(cursor, second, b.pk, "-4.00")
        run_deferred_checks()
        assert LedgerEntry.objects.filter(transaction_id__in=[first, second]).count() == 4
        unbalanced = _raw_transaction(cursor, "raw:unbalanced")
        _raw_entry(cursor, unbalanced, a.pk, "5.00")
        _raw_entry(cursor, unbalanced, b.pk, "-1.00")
        run_deferred_checks()


@pytest.mark.django_db(transaction=True)
def test_entries_cannot_be_added_to_a_committed_transaction():
    a = ledger_account_for(K.PAYMENT_CLEARING)
    b = ledger_account_for(K.BAD_DEBT)
    txn, _created = ledger_post(kind="adjustment", idempotency_key="adj:old", entries=[(a, D("1.00")), (b, D("-1.00"))])

    with pytest.raises(IntegrityError, match="already posted"), transaction.atomic(), connection.cursor() as cursor:
        _raw_entry(cursor, txn.pk, a.pk, "5.00")
        _raw_entry(cursor, txn.pk, b.pk, "-5.00")

    assert LedgerEntry.objects.filter(transaction=txn).count() == 2
    assert account_balance(a) == D("1.00")


@pytest.fixture
def posted(consumer, merchant):
    receivable = ledger_account_for(K.CONSUMER_RECEIVABLE, consumer=consumer)
    payable = ledger_account_for(K.MERCHANT_PAYABLE, merchant=merchant)
    txn, _created = ledger_post(
        kind="adjustment", idempotency_key="adj:p", entries=[(receivable, D("3.00")), (payable, D("-3.00"))]
    )
    return txn


def _unchanged(txn: LedgerTransaction) -> None:
    fresh = LedgerTransaction.objects.get(pk=txn.pk)
    assert fresh.description == txn.description
    assert sorted(fresh.entries.values_list("amount", flat=True)) == [D("-3.00"), D("3.00")]
    assert LedgerEntry.objects.count() == 2


@pytest.mark.parametrize(
    "change",
    [
        lambda txn: LedgerEntry.objects.filter(transaction=txn).update(amount=D("4.00")),
        lambda txn: LedgerEntry.objects.filter(transaction=txn).delete(),
        lambda txn: LedgerEntry.objects.filter(transaction=txn).first().delete(),
        lambda txn: LedgerTransaction.objects.filter(pk=txn.pk).update(description="rewritten"),
    ],
    ids=["entry-update", "entry-queryset-delete", "entry-instance-delete", "txn-update"],
)
def test_orm_updates_and_deletes_of_ledger_rows_are_refused(posted, change):
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        change(posted)
    _unchanged(posted)


def test_deleting_a_transaction_is_refused_by_django_and_by_the_database(posted):
    # Django's PROTECT stops it first while entries exist...
    with pytest.raises(IntegrityError, match="protected foreign keys"), transaction.atomic():
        LedgerTransaction.objects.filter(pk=posted.pk).delete()
    # ...and the trigger refuses even a transaction without entries (inserted here, not committed).
    with transaction.atomic():
        with connection.cursor() as cursor:
            bare_id = _raw_transaction(cursor, "raw:bare")
        with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
            LedgerTransaction.objects.filter(pk=bare_id).delete()
        assert LedgerTransaction.objects.filter(pk=bare_id).exists()
        transaction.set_rollback(True)  # the bare transaction must not reach the teardown's balance check
    _unchanged(posted)


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE bnpl_ledgerentry SET amount = amount * 2",
        "DELETE FROM bnpl_ledgerentry",
        "UPDATE bnpl_ledgertransaction SET description = 'x'",
        "DELETE FROM bnpl_ledgertransaction",
    ],
)
def test_raw_sql_updates_and_deletes_of_ledger_rows_are_refused(posted, sql):
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)
    _unchanged(posted)


def test_ledger_check_reports_an_unbalanced_transaction():
    # Before COMMIT the deferred triggers have not fired yet, which lets the check's own
    # detection be tested.
    a = ledger_account_for(K.PAYMENT_CLEARING)
    with transaction.atomic():
        with connection.cursor() as cursor:
            txn_id = _raw_transaction(cursor, "raw:check")
            _raw_entry(cursor, txn_id, a.pk, "2.00")

        assert ledger_check() == [f"ledger transaction {txn_id} (raw:check) has 1 entries summing to 2.00"]
        transaction.set_rollback(True)  # keep the broken posting from the teardown's balance check
    assert ledger_check() == []


# --- balances -------------------------------------------------------------------------------------


def test_balances_are_sums_of_entries(consumer, merchant):
    receivable = ledger_account_for(K.CONSUMER_RECEIVABLE, consumer=consumer)
    payable = ledger_account_for(K.MERCHANT_PAYABLE, merchant=merchant)
    clearing = ledger_account_for(K.PAYMENT_CLEARING)
    ledger_post(kind="adjustment", idempotency_key="b1", entries=[(receivable, D("10.10")), (payable, D("-10.10"))])
    ledger_post(kind="adjustment", idempotency_key="b2", entries=[(receivable, D("0.90")), (payable, D("-0.90"))])
    ledger_post(kind="adjustment", idempotency_key="b3", entries=[(clearing, D("4.00")), (receivable, D("-4.00"))])

    assert account_balance(receivable) == D("7.00")
    assert account_balance(payable) == D("-11.00")
    assert account_balance(clearing) == D("4.00")
    assert account_balance(ledger_account_for(K.BAD_DEBT)) == D("0.00")
    for account in (receivable, payable, clearing):
        assert account_balance(account) == sum(
            LedgerEntry.objects.filter(account=account).values_list("amount", flat=True)
        )
    assert sum(LedgerEntry.objects.values_list("amount", flat=True)) == D("0.00")


# --- posting helpers: T-account effects ------------------------------------------------------------


def test_completion_recognises_receivable_and_payable():
    order = make_order(amount_due="100.00")

    txn, created = post_completion(order)
    run_deferred_checks()

    assert created is True
    assert txn.kind == TransactionKind.COMPLETION
    assert txn.idempotency_key == f"completion:{order.pk}"
    assert txn.order_id == order.pk
    assert balances(order) == expect(consumer_receivable="100.00", merchant_payable="-100.00")
    assert post_completion(order) == (txn, False)
    assert LedgerTransaction.objects.count() == 1


def test_fee_moves_payable_to_fee_revenue():
    order = make_order(amount_due="100.00")
    post_completion(order)

    txn, _created = post_fee(order, fee_amount=D("0.60"))

    assert txn.idempotency_key == f"fee:{order.pk}"
    assert balances(order) == expect(
        consumer_receivable="100.00", merchant_payable="-99.40", platform_fee_revenue="-0.60"
    )


def test_full_life_completion_fee_charge_refund_payout():
    order = make_order(amount_due="100.00")
    post_completion(order)
    post_fee(order, fee_amount=D("0.60"))

    charge, _ = post_charge(order, attempt_key="att-1", amount=D("100.00"))
    assert charge.idempotency_key == "charge:att-1"
    assert balances(order) == expect(merchant_payable="-99.40", platform_fee_revenue="-0.60", payment_clearing="100.00")

    refund, _ = post_refund(order, refund_key="rf-1", amount=D("30.00"))
    assert refund.idempotency_key == "refund:rf-1"
    assert balances(order) == expect(merchant_payable="-69.40", platform_fee_revenue="-0.60", payment_clearing="70.00")

    payout, _ = post_payout(merchant=order.merchant, payout_key="po-1", amount=D("69.40"))
    assert payout.idempotency_key == "payout:po-1"
    assert payout.order_id is None
    assert balances(order) == expect(platform_fee_revenue="-0.60", payment_clearing="0.60")

    run_deferred_checks()
    assert ledger_check() == []
    assert LedgerTransaction.objects.count() == 5  # no guarantee recovery: nothing was advanced


def test_guarantee_funds_the_payout_and_the_later_charge_repays_it():
    order = make_order(amount_due="50.00")
    post_completion(order)

    guarantee, _ = post_guarantee(order)
    assert guarantee.idempotency_key == f"guarantee:{order.pk}"
    # The consumer still owes; the platform's advance sits in clearing for the payout.
    assert balances(order) == expect(
        consumer_receivable="50.00", merchant_payable="-50.00", payment_clearing="50.00", guarantee_advances="-50.00"
    )

    post_payout(merchant=order.merchant_id, payout_key="po-g", amount=D("50.00"))
    assert balances(order) == expect(consumer_receivable="50.00", guarantee_advances="-50.00")

    charge, created = post_charge(order, attempt_key="att-g", amount=D("50.00"))
    assert created is True
    assert balances(order) == expect()
    recovery = LedgerTransaction.objects.get(idempotency_key="guarantee_recovery:att-g")
    assert recovery.kind == TransactionKind.GUARANTEE
    assert entries_of(recovery) == [("guarantee_advances", D("50.00")), ("payment_clearing", D("-50.00"))]

    # A replay of the charge posting adds neither a charge nor a second recovery.
    assert post_charge(order, attempt_key="att-g", amount=D("50.00")) == (charge, False)
    assert LedgerTransaction.objects.filter(order=order, kind=TransactionKind.GUARANTEE).count() == 2
    assert balances(order) == expect()
    run_deferred_checks()


def test_write_off_turns_the_outstanding_receivable_into_bad_debt():
    order = make_order(amount_due="80.00")
    post_completion(order)
    post_guarantee(order)
    post_payout(merchant=order.merchant, payout_key="po-w", amount=D("80.00"))

    txn, _ = post_write_off(order)

    assert txn.idempotency_key == f"write_off:{order.pk}"
    assert entries_of(txn) == sorted(
        [("bad_debt", D("80.00")), (f"consumer_receivable:c:{order.consumer_id}", D("-80.00"))]
    )
    # The platform's advance is never repaid: it is the loss the bad debt records.
    assert balances(order) == expect(bad_debt="80.00", guarantee_advances="-80.00")
    run_deferred_checks()


def test_amount_reduction_reverses_part_of_the_completion():
    order = make_order(amount_due="100.00")
    post_completion(order)

    txn, _ = post_amount_reduction(order, reduction_key="chg-1", amount=D("20.00"), description="lowered")

    assert txn.kind == TransactionKind.ADJUSTMENT
    assert txn.idempotency_key == "adjustment:chg-1"
    assert balances(order) == expect(consumer_receivable="80.00", merchant_payable="-80.00")
    assert order_account_balance(order, K.CONSUMER_RECEIVABLE) == D("80.00")


def test_order_balances_are_per_order(consumer, merchant):
    one = make_order(merchant=merchant, consumer=consumer, amount_due="10.00")
    two = make_order(merchant=merchant, consumer=consumer, amount_due="25.00")
    post_completion(one)
    post_completion(two)
    post_charge(one, attempt_key="a-one", amount=D("10.00"))

    assert order_account_balance(one, K.CONSUMER_RECEIVABLE) == D("0.00")
    assert order_account_balance(two, K.CONSUMER_RECEIVABLE) == D("25.00")
    assert account_balance(ledger_account_for(K.CONSUMER_RECEIVABLE, consumer=consumer)) == D("25.00")


@pytest.mark.parametrize("amount", [D("0.00"), D("-1.00")])
def test_helpers_refuse_amounts_that_are_not_positive(amount):
    order = make_order(amount_due="0.00")
    with pytest.raises(LedgerError):
        post_completion(order)
    with pytest.raises(LedgerError):
        post_fee(order, fee_amount=amount)
    with pytest.raises(LedgerError):
        post_charge(order, attempt_key="z", amount=amount)
    with pytest.raises(LedgerError):
        post_refund(order, refund_key="z", amount=amount)
    with pytest.raises(LedgerError):
        post_payout(merchant=order.merchant, payout_key="z", amount=amount)
    assert LedgerTransaction.objects.count() == 0


def test_ledger_check_passes_with_triggers_installed():
    assert ledger_check() == []
