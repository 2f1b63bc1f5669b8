"""Two real connections racing on the same rows (PostgreSQL row locks, not test doubles).

Each call runs in its own thread, hence its own database connection, released
together by a barrier; the services commit for real (``transaction=True``).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from bnpl import services, tasks
from bnpl.choices import OPEN_STATUSES, ActorKind, AgreementStatus, OrderStatus
from bnpl.exceptions import InvalidTransition, NotAllowed, ValidationFailed
from bnpl.models import Agreement, CreditOrder, OrderEvent
from merchants.choices import ConfirmMode
from tests.bnpl.helpers import exposure, order_in, run_concurrently
from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory, MerchantMemberFactory

S = OrderStatus
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shop():
    merchant = MerchantFactory()
    return merchant, MerchantMemberFactory(merchant=merchant).user


def agreement_listing_of(merchant):
    return ListingFactory(merchant=merchant, confirm_mode=ConfirmMode.AGREEMENT, max_amount=Decimal("100.00"))


def place(user, listing, consumer, out_order_no, amount="60.00"):
    return lambda: services.credit_order_create(
        actor=user,
        actor_kind=ActorKind.MERCHANT,
        merchant=listing.merchant,
        listing=listing,
        out_order_no=out_order_no,
        consumer=consumer,
        max_amount=amount,
    )


@pytest.mark.parametrize("same_listing", [True, False], ids=["one-agreement", "two-agreements"])
def test_concurrent_orders_never_exceed_the_limit(shop, same_listing):
    """Invariant 3: limit ¥100, two ¥60 orders at once → one active, one declined, ¥60 held."""
    merchant, user = shop
    consumer = ConsumerFactory(profile__credit_limit_amount=Decimal("100.00"))
    first = agreement_listing_of(merchant)
    second = first if same_listing else agreement_listing_of(merchant)
    for listing in {first, second}:
        services.agreement_sign(actor=None, consumer=consumer, listing=listing)

    results = run_concurrently(place(user, first, consumer, "A-1"), place(user, second, consumer, "A-2"))

    assert all(isinstance(r, CreditOrder) for r in results), results
    assert sorted(CreditOrder.objects.values_list("status", flat=True)) == [S.ACTIVE, S.DECLINED]
    assert exposure(consumer) == Decimal("60.00")
    assert sum(CreditOrder.objects.values_list("hold_amount", flat=True)) == Decimal("60.00")
    declined = OrderEvent.objects.get(to_status=S.DECLINED)
    assert [r["code"] for r in declined.data["reasons"]] == ["insufficient_limit"]


def test_concurrent_confirms_of_one_order_hold_once(shop):
    merchant, user = shop
    listing = ListingFactory(merchant=merchant)
    consumer = ConsumerFactory()
    order = services.credit_order_create(
        actor=user, actor_kind=ActorKind.MERCHANT, merchant=merchant, listing=listing, out_order_no="O-1"
    )

    def confirm():
        return services.credit_order_confirm(actor=consumer.user, order=order, consumer=consumer)

    results = run_concurrently(confirm, confirm)

    confirmed = [r for r in results if isinstance(r, CreditOrder)]
    refused = [r for r in results if isinstance(r, InvalidTransition)]
    assert (len(confirmed), len(refused)) == (1, 1), results
    assert str(refused[0]) == "order O-1 is active; it cannot be confirmed"
    order.refresh_from_db()
    assert (order.status, order.hold_amount) == (S.ACTIVE, Decimal("20.00"))
    assert exposure(consumer) == Decimal("20.00")
    assert OrderEvent.objects.filter(order=order, to_status=S.ACTIVE).count() == 1


@pytest.mark.parametrize("attempt", range(3))
def test_agreement_close_racing_an_order_never_leaves_an_open_order_under_a_closed_agreement(shop, attempt):
    merchant, user = shop
    listing = agreement_listing_of(merchant)
    consumer = ConsumerFactory()
    agreement = services.agreement_sign(actor=None, consumer=consumer, listing=listing)

    closing = lambda: services.agreement_close(actor=consumer.user, agreement=agreement, reason="revoke")  # noqa: E731
    results = run_concurrently(closing, place(user, listing, consumer, f"R-{attempt}", amount="10.00"))

    agreement.refresh_from_db()
    open_orders = CreditOrder.objects.filter(agreement=agreement, status__in=sorted(OPEN_STATUSES)).count()
    if agreement.status == AgreementStatus.CLOSED:
        assert open_orders == 0
        assert isinstance(results[1], ValidationFailed) and results[1].code == "agreement_required", results
        assert CreditOrder.objects.count() == 0
        assert exposure(consumer) == Decimal("0.00")
    else:
        assert isinstance(results[0], NotAllowed) and results[0].code == "order_open", results
        assert open_orders == 1
        assert exposure(consumer) == Decimal("10.00")
    assert Agreement.objects.filter(status=AgreementStatus.CLOSED, credit_orders__status__in=OPEN_STATUSES).count() == 0


def test_concurrent_signs_return_one_agreement(shop):
    merchant, _ = shop
    listing = agreement_listing_of(merchant)
    consumer = ConsumerFactory()

    def sign():
        return services.agreement_sign(actor=None, consumer=consumer, listing=listing)

    first, second = run_concurrently(sign, sign)
    assert isinstance(first, Agreement) and isinstance(second, Agreement), (first, second)
    assert first.pk == second.pk
    assert Agreement.objects.count() == 1


def test_concurrent_duplicate_usage_counts_once(shop):
    merchant, _ = shop
    listing = ListingFactory(merchant=merchant)
    consumer = ConsumerFactory()
    order = order_in(S.ACTIVE, listing=listing, consumer=consumer)

    def report():
        return services.usage_record(
            actor=None,
            merchant=merchant,
            order=order,
            merchant_event_id="E-1",
            quantity="1.5",
            occurred_at=timezone.now(),
        )

    results = run_concurrently(report, report)
    assert sorted(created for _, created in results) == [False, True], results
    assert results[0][0].pk == results[1][0].pk
    assert order.usage_events.count() == 1


def test_two_expiry_runs_at_once_expire_each_order_once(shop):
    merchant, _ = shop
    listing = ListingFactory(merchant=merchant)
    for _ in range(6):
        order_in(S.PENDING_CONFIRMATION, listing=listing, expires_in=timedelta(minutes=-1))

    counts = run_concurrently(tasks.expire_pending_orders, tasks.expire_pending_orders)

    assert sum(counts) == 6, counts
    assert CreditOrder.objects.filter(status=S.EXPIRED).count() == 6
    assert OrderEvent.objects.filter(to_status=S.EXPIRED).count() == 6
