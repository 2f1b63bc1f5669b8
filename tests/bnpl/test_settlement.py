"""Merchant settlement: batches, holds, payouts, statements, and two settlement jobs at once."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.db.models import Count, Sum
from django.utils import timezone

from bnpl.choices import ActorKind, OrderStatus
from bnpl.disputes import dispute_decide, dispute_open
from bnpl.exceptions import InvalidTransition, NotAllowed
from bnpl.ledger import ledger_account_for, ledger_check
from bnpl.models import LedgerEntry, LedgerTransaction, Payout, SettlementBatch, SettlementItem, UnsettledEntry
from bnpl.models.ledger import AccountKind
from bnpl.models.settlement import DisputeOutcome, PayoutStatus
from bnpl.refunds import credit_order_refund
from bnpl.settlement import payout_mark_paid, settle_merchants, statement_csv
from tests.bnpl.charging_helpers import account_total, due_order
from tests.bnpl.helpers import run_concurrently
from tests.bnpl.partb_helpers import charged_order
from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory, UserFactory

S = OrderStatus
D = Decimal


@pytest.fixture
def listing(merchant):
    return ListingFactory(merchant=merchant, max_amount=D("500.00"))


def today():
    return timezone.localdate()


def payable_entries(merchant):
    account = ledger_account_for(AccountKind.MERCHANT_PAYABLE, merchant=merchant)
    return LedgerEntry.objects.filter(account=account).exclude(transaction__kind="payout")


def parse(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


@pytest.mark.django_db
def test_batch_nets_charges_fees_and_refunds_and_statement_matches(listing, merchant):
    consumer = ConsumerFactory()
    a = charged_order(listing, consumer, amount="100.00")
    b = charged_order(listing, consumer, amount="50.00")
    due_order(listing, ConsumerFactory(), amount="30.00")  # not charged: not settleable yet
    credit_order_refund(
        actor=None, actor_kind=ActorKind.MERCHANT, order=a, amount="40.00", reason="return", idempotency_key="k"
    )
    [batch_id] = settle_merchants(business_date=today())
    batch = SettlementBatch.objects.get(pk=batch_id)
    assert (batch.gross_amount, batch.fee_amount, batch.refund_amount, batch.held_amount) == (
        D("150.00"),
        D("0.90"),
        D("40.00"),
        D("0.00"),
    )
    assert batch.net_amount == D("109.10")
    assert batch.item_count == 5  # two completions, two fees, one refund
    assert batch.payout.amount == D("109.10")
    assert batch.payout.status == PayoutStatus.PENDING
    assert set(batch.items.values_list("order_id", flat=True)) == {a.pk, b.pk}

    rows = parse(statement_csv(batch))
    header, lines, total = rows[0], rows[1:-1], rows[-1]
    assert header == [
        "Order id",
        "Merchant order no.",
        "Time",
        "Type",
        "Gross",
        "Fee",
        "Refund",
        "Adjustment",
        "Held",
        "Net",
    ]
    assert len(lines) == 5
    columns = list(zip(*[[D(v) for v in line[4:]] for line in lines], strict=True))
    assert [sum(c, D(0)) for c in columns] == [D("150.00"), D("0.90"), D("40.00"), D("0.00"), D("0.00"), D("109.10")]
    assert total[3:] == ["Total", "150.00", "0.90", "40.00", "0.00", "0.00", "109.10"]
    assert {line[1] for line in lines} == {a.out_order_no, b.out_order_no}

    # Run again the same day: nothing more.
    assert settle_merchants(business_date=today()) == []
    payout_mark_paid(actor=None, payout=batch.payout, reference="BANK-1")
    # Left owed: only the uncharged order's 30.00, which is not settleable yet.
    assert account_total(AccountKind.MERCHANT_PAYABLE, merchant_id=merchant.pk) == D("-30.00")
    with pytest.raises(InvalidTransition):
        payout_mark_paid(actor=None, payout=batch.payout)
    assert LedgerTransaction.objects.filter(kind="payout").count() == 1
    assert ledger_check() == []


@pytest.mark.django_db
def test_payout_not_matching_settled_entries_is_refused(listing):
    charged_order(listing, ConsumerFactory(), amount="20.00")
    [batch_id] = settle_merchants(business_date=today())
    payout = Payout.objects.get(batch_id=batch_id)
    Payout.objects.filter(pk=payout.pk).update(amount=D("25.00"))  # more than was settled
    with pytest.raises(NotAllowed) as exc:
        payout_mark_paid(actor=None, payout=payout)
    assert exc.value.code == "payout_unsettled"
    assert LedgerTransaction.objects.filter(kind="payout").count() == 0
    assert Payout.objects.get(pk=payout.pk).status == PayoutStatus.PENDING


@pytest.mark.django_db
def test_dispute_after_charge_holds_then_releases(listing):
    consumer = ConsumerFactory()
    order = charged_order(listing, consumer, amount="60.00")
    dispute = dispute_open(
        actor=None, consumer=consumer, order=order, reason="faulty", description="broken", amount="20.00"
    )
    [first] = settle_merchants(business_date=today())
    batch = SettlementBatch.objects.get(pk=first)
    assert (batch.gross_amount, batch.fee_amount, batch.held_amount, batch.net_amount) == (
        D("60.00"),
        D("0.36"),
        D("20.00"),
        D("39.64"),
    )
    dispute_decide(actor=UserFactory(is_staff=True), dispute=dispute, outcome=DisputeOutcome.MERCHANT_WON, reason="ok")
    [second] = settle_merchants(business_date=today() + timezone.timedelta(days=1))
    batch = SettlementBatch.objects.get(pk=second)
    assert (batch.released_amount, batch.net_amount, batch.item_count) == (D("20.00"), D("20.00"), 1)
    rows = parse(statement_csv(batch))
    assert rows[1][3:] == ["Dispute hold released", "0.00", "0.00", "0.00", "0.00", "-20.00", "20.00"]
    assert settle_merchants(business_date=today() + timezone.timedelta(days=2)) == []


@pytest.mark.django_db
def test_dispute_won_by_consumer_after_hold_nets_to_zero_and_waits(listing):
    consumer = ConsumerFactory()
    order = charged_order(listing, consumer, amount="60.00")
    dispute = dispute_open(actor=None, consumer=consumer, order=order, reason="faulty", description="", amount="20")
    settle_merchants(business_date=today())
    dispute_decide(actor=UserFactory(is_staff=True), dispute=dispute, outcome=DisputeOutcome.CONSUMER_WON, reason="x")
    # The refund (−20) and the release (+20) cancel: no batch with a zero net; they wait for more sales.
    assert settle_merchants(business_date=today() + timezone.timedelta(days=1)) == []
    charged_order(listing, ConsumerFactory(), amount="10.00")
    [batch_id] = settle_merchants(business_date=today() + timezone.timedelta(days=2))
    batch = SettlementBatch.objects.get(pk=batch_id)
    assert (batch.refund_amount, batch.released_amount, batch.gross_amount, batch.net_amount) == (
        D("20.00"),
        D("20.00"),
        D("10.00"),
        D("9.94"),
    )
    assert ledger_check() == []


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_settlement_jobs_settle_each_entry_once():
    merchants = [MerchantFactory() for _ in range(4)]
    for merchant in merchants:
        listing = ListingFactory(merchant=merchant, max_amount=D("500.00"))
        for amount in ("10.00", "20.00", "30.00"):
            charged_order(listing, ConsumerFactory(), amount=amount)
    results = run_concurrently(
        lambda: settle_merchants(business_date=today()), lambda: settle_merchants(business_date=today())
    )
    assert not any(isinstance(r, Exception) for r in results), results
    assert sorted(results[0] + results[1]) == sorted(SettlementBatch.objects.values_list("pk", flat=True))
    assert SettlementBatch.objects.count() == 4
    entries = LedgerEntry.objects.filter(account__kind=AccountKind.MERCHANT_PAYABLE).exclude(transaction__kind="payout")
    assert entries.count() == 4 * 6
    assert SettlementItem.objects.filter(ledger_entry__isnull=False).count() == 4 * 6
    assert not SettlementItem.objects.values("ledger_entry").annotate(n=Count("id")).filter(n__gt=1).exists()
    assert not UnsettledEntry.objects.exists()  # every entry dequeued by the one batch that took it
    for merchant in merchants:
        batch = SettlementBatch.objects.get(merchant=merchant)
        assert batch.net_amount == D("60.00") - D("0.36")
        assert batch.items.aggregate(t=Sum("amount"))["t"] == batch.net_amount
        assert set(payable_entries(merchant).values_list("pk", flat=True)) == set(
            batch.items.values_list("ledger_entry_id", flat=True)
        )
    assert ledger_check() == []


@pytest.mark.django_db
def test_admin_pages_statement_download_and_payout_action(client, staff_user, listing):
    charged_order(listing, ConsumerFactory(), amount="20.00")
    [batch_id] = settle_merchants(business_date=today())
    client.force_login(staff_user)
    for url in (
        "/admin/bnpl/settlementbatch/",
        f"/admin/bnpl/settlementbatch/{batch_id}/change/",
        "/admin/bnpl/payout/",
        "/admin/bnpl/dispute/",
        "/admin/bnpl/refund/",
    ):
        assert client.get(url).status_code == 200, url
    download = client.get(f"/admin/bnpl/settlementbatch/{batch_id}/statement.csv")
    assert download.status_code == 200
    assert download.content.startswith(b"\xef\xbb\xbf")
    assert parse(download.content)[-1][-1] == "19.88"
    payout = Payout.objects.get(batch_id=batch_id)
    response = client.post("/admin/bnpl/payout/", {"action": "mark_paid", "_selected_action": [payout.pk]}, follow=True)
    assert response.status_code == 200
    assert Payout.objects.get(pk=payout.pk).status == PayoutStatus.PAID
    assert LedgerTransaction.objects.filter(kind="payout", idempotency_key=f"payout:{payout.pk}").count() == 1


@pytest.mark.django_db
def test_admin_decides_dispute_with_reason(client, staff_user, listing):
    consumer = ConsumerFactory()
    order = due_order(listing, consumer, amount="20.00")
    dispute = dispute_open(actor=None, consumer=consumer, order=order, reason="not_received", description="")
    client.force_login(staff_user)
    base = {"action": "decide_for_merchant", "_selected_action": [dispute.pk]}
    page = client.post("/admin/bnpl/dispute/", base)
    assert page.status_code == 200
    assert b"reason" in page.content
    client.post("/admin/bnpl/dispute/", {**base, "apply": "1", "reason": "proof of delivery"}, follow=True)
    dispute.refresh_from_db()
    assert (dispute.status, dispute.outcome, dispute.decision_reason) == (
        "decided",
        "merchant_won",
        "proof of delivery",
    )


@pytest.mark.django_db
def test_guaranteed_order_is_settled_before_the_consumer_pays(listing):
    from datetime import timedelta

    from bnpl.overdue import apply_guarantee

    waiting = due_order(listing, ConsumerFactory(), amount="25.00", status=S.COLLECTING)
    guaranteed = due_order(
        listing,
        ConsumerFactory(),
        amount="40.00",
        status=S.COLLECTING,
        collecting_since=timezone.now() - timedelta(hours=73),
    )
    assert apply_guarantee() == 1
    [batch_id] = settle_merchants(business_date=today())
    batch = SettlementBatch.objects.get(pk=batch_id)
    assert (batch.gross_amount, batch.fee_amount, batch.net_amount) == (D("40.00"), D("0.00"), D("40.00"))
    assert list(batch.items.values_list("order_id", flat=True)) == [guaranteed.pk]
    assert not SettlementItem.objects.filter(order=waiting).exists()
    payout_mark_paid(actor=None, payout=batch.payout)
    assert ledger_check() == []
