"""The settlement queue (``UnsettledEntry``): what the daily selection reads instead of a merchant's history.

Filled by a database trigger in the posting's transaction, emptied by the batch's transaction; these tests
check both ends, the entries that must wait, rollbacks, postings that commit late, and the backfill.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone

from bnpl import settlement
from bnpl.charging import run_charges
from bnpl.ledger import ledger_account_for, ledger_check, post_completion, post_refund
from bnpl.models import LedgerEntry, SettlementBatch, SettlementItem, UnsettledEntry
from bnpl.models.ledger import AccountKind
from bnpl.settlement import payout_mark_paid, queue_unsettled_entries, settle_merchants
from tests.bnpl.charging_helpers import due_order, fund
from tests.bnpl.helpers import order_in
from tests.bnpl.partb_helpers import charged_order
from tests.factories import ConsumerFactory, ListingFactory

D = Decimal
SETTLED_KINDS = ("completion", "fee", "refund", "adjustment")


@pytest.fixture
def listing(merchant):
    return ListingFactory(merchant=merchant, max_amount=D("500.00"))


def today():
    return timezone.localdate()


def queued(merchant) -> set[int]:
    """Ids of the merchant's queued entries."""
    account = ledger_account_for(AccountKind.MERCHANT_PAYABLE, merchant=merchant)
    return set(UnsettledEntry.objects.filter(account=account).values_list("entry_id", flat=True))


def payable_entries(merchant, **filters) -> set[int]:
    account = ledger_account_for(AccountKind.MERCHANT_PAYABLE, merchant=merchant)
    return set(LedgerEntry.objects.filter(account=account, **filters).values_list("pk", flat=True))


def batch_entries(batch_id: int) -> set[int]:
    return set(SettlementItem.objects.filter(batch_id=batch_id).values_list("ledger_entry_id", flat=True))


@pytest.mark.django_db
def test_payable_entries_are_queued_when_posted_and_dequeued_when_batched(listing, merchant):
    order = charged_order(listing, ConsumerFactory(), amount="100.00")
    completion_and_fee = payable_entries(merchant, transaction__order=order)
    assert len(completion_and_fee) == 2
    # Only the merchant-payable side of settled kinds: not the receivable, the clearing or the charge.
    assert queued(merchant) == completion_and_fee
    assert UnsettledEntry.objects.count() == 2
    entry = UnsettledEntry.objects.select_related("entry").get(entry__transaction__kind="completion")
    assert entry.created_at == entry.entry.created_at

    [batch_id] = settle_merchants(business_date=today())
    assert batch_entries(batch_id) == completion_and_fee
    assert queued(merchant) == set()

    # The payout posting is what settlement produces: never queued.
    payout_mark_paid(actor=None, payout=SettlementBatch.objects.get(pk=batch_id).payout, reference="B-1")
    assert payable_entries(merchant, transaction__kind="payout")
    assert not UnsettledEntry.objects.exists()
    assert ledger_check() == []


@pytest.mark.django_db
def test_entry_of_an_unpaid_order_stays_queued_until_its_order_is_paid(listing, merchant):
    paid = charged_order(listing, ConsumerFactory(), amount="50.00")
    consumer = ConsumerFactory()  # no card yet: the run above could not charge the order below
    waiting = due_order(listing, consumer, amount="30.00")
    waiting_completion = payable_entries(merchant, transaction__order=waiting)
    assert waiting_completion <= queued(merchant)

    [first] = settle_merchants(business_date=today())
    assert batch_entries(first) == payable_entries(merchant, transaction__order=paid)
    assert queued(merchant) == waiting_completion  # not settleable yet: still waiting, still queued

    fund(consumer)
    run_charges(threads=1)
    waiting.refresh_from_db()
    assert waiting.status == "paid"
    [second] = settle_merchants(business_date=today() + timedelta(days=1))
    assert batch_entries(second) == payable_entries(merchant, transaction__order=waiting)  # completion and fee
    assert SettlementBatch.objects.get(pk=second).gross_amount == D("30.00")
    assert queued(merchant) == set()


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_posting_leaves_no_queue_row(listing, merchant):
    order = order_in("completed", listing=listing, consumer=ConsumerFactory())
    ledger_account_for(AccountKind.MERCHANT_PAYABLE, merchant=merchant)  # the account outlives the rollback
    with pytest.raises(RuntimeError), transaction.atomic():
        post_completion(order)
        assert len(queued(merchant)) == 1  # queued in the posting's own transaction...
        raise RuntimeError("the service failed after posting")
    assert not LedgerEntry.objects.filter(transaction__order=order).exists()
    assert not UnsettledEntry.objects.exists()  # ...and gone with it


@pytest.mark.django_db(transaction=True)
def test_a_posting_committed_after_a_settlement_is_settled_the_next_day(listing, merchant):
    # The case a high-water mark of entry ids gets wrong: an entry whose transaction commits after later
    # entries were settled has a lower id (and an earlier posting time) than they have.
    early = charged_order(listing, ConsumerFactory(), amount="80.00")
    posted, release = threading.Event(), threading.Event()
    late: dict[str, int] = {}

    def refund_committing_late() -> None:
        try:
            with transaction.atomic():
                txn, _created = post_refund(early, refund_key="late", amount=D("5.00"))
                late["entry"] = txn.entries.get(account__kind=AccountKind.MERCHANT_PAYABLE).pk
                posted.set()
                assert release.wait(30)
        finally:
            connection.close()

    worker = threading.Thread(target=refund_committing_late)
    worker.start()
    try:
        assert posted.wait(30)
        later = charged_order(listing, ConsumerFactory(), amount="20.00")
        [first] = settle_merchants(business_date=today())
    finally:
        release.set()
        worker.join(30)
    assert not worker.is_alive()
    assert late["entry"] not in batch_entries(first)
    assert late["entry"] < max(payable_entries(merchant, transaction__order=later))
    assert queued(merchant) == {late["entry"]}

    charged_order(listing, ConsumerFactory(), amount="10.00")  # a refund alone would net below zero
    [second] = settle_merchants(business_date=today() + timedelta(days=1))
    assert late["entry"] in batch_entries(second)
    assert SettlementBatch.objects.get(pk=second).refund_amount == D("5.00")
    assert queued(merchant) == set()
    assert ledger_check() == []


@pytest.mark.django_db
def test_a_batch_whose_entries_were_taken_meanwhile_rolls_back(listing, merchant, monkeypatch):
    charged_order(listing, ConsumerFactory(), amount="40.00")
    before = queued(merchant)
    hold_lines = settlement._hold_lines

    def another_writer_takes_one(merchant_id, now):
        # Between the selection and the dequeue: as a writer that ignored the advisory lock would.
        UnsettledEntry.objects.filter(entry_id=min(before)).delete()
        return hold_lines(merchant_id, now)

    monkeypatch.setattr(settlement, "_hold_lines", another_writer_takes_one)
    assert settle_merchants(business_date=today()) == []
    assert not SettlementBatch.objects.exists()
    assert not SettlementItem.objects.exists()
    assert queued(merchant) == before  # the whole merchant's transaction rolled back


@pytest.mark.django_db
def test_backfill_queues_exactly_the_unsettled_entries_and_is_idempotent(listing, merchant):
    charged_order(listing, ConsumerFactory(), amount="60.00")
    [batch_id] = settle_merchants(business_date=today())
    waiting = due_order(listing, ConsumerFactory(), amount="15.00")
    refunded = charged_order(listing, ConsumerFactory(), amount="25.00")
    post_refund(refunded, refund_key="r1", amount=D("5.00"))
    expected = queued(merchant)
    assert expected == payable_entries(merchant, transaction__kind__in=SETTLED_KINDS) - batch_entries(batch_id)
    assert payable_entries(merchant, transaction__order=waiting) <= expected

    UnsettledEntry.objects.all().delete()  # as entries loaded with the trigger disabled would be
    assert queue_unsettled_entries() == len(expected)
    assert queued(merchant) == expected
    assert queue_unsettled_entries() == 0
