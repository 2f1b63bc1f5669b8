"""Two admissions for one consumer at the same instant, through bnpl's order creation (real connections).

Both decisions read the profile without a lock and both approve; the credit hold's
conditional UPDATE then lets exactly one order take the limit (or the personal spend
cap), and the other order ends declined with ``insufficient_limit``.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from bnpl import services
from bnpl.choices import ActorKind, OrderStatus
from bnpl.models import CreditOrder, OrderEvent
from consumers.models import CreditProfile
from merchants.choices import ConfirmMode
from scoring.models import AdmissionDecision, ConsumerFeatures
from tests.bnpl.helpers import run_concurrently
from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory, MerchantMemberFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _race(consumer):
    merchant = MerchantFactory()
    user = MerchantMemberFactory(merchant=merchant).user
    listing = ListingFactory(merchant=merchant, confirm_mode=ConfirmMode.AGREEMENT, max_amount=Decimal("100.00"))
    services.agreement_sign(actor=None, consumer=consumer, listing=listing)

    def place(no):
        return lambda: services.credit_order_create(
            actor=user,
            actor_kind=ActorKind.MERCHANT,
            merchant=merchant,
            listing=listing,
            out_order_no=no,
            consumer=consumer,
            max_amount="60.00",
        )

    return run_concurrently(place("R-1"), place("R-2"))


def _assert_one_wins(consumer, results, allowed_reasons):
    assert all(isinstance(r, CreditOrder) for r in results), results
    assert sorted(CreditOrder.objects.values_list("status", flat=True)) == [OrderStatus.ACTIVE, OrderStatus.DECLINED]
    assert CreditProfile.objects.get(consumer=consumer).open_exposure_amount == Decimal("60.00")
    declined = OrderEvent.objects.get(to_status=OrderStatus.DECLINED)
    # Declined by the hold (both decisions approved at once) or, when the second decision ran after
    # the first commit, by the policy itself: either way exactly one reason, and never both held.
    assert [r["code"] for r in declined.data["reasons"]] in [[code] for code in allowed_reasons]
    # Both decisions were stored (two order assessments after the sign-up's), and only the winner is counted open.
    assert AdmissionDecision.objects.filter(channel="order").count() == 2
    features = ConsumerFeatures.objects.get(pk=consumer.pk)
    assert (features.open_orders, features.orders_total) == (1, 1)


def test_two_orders_at_once_never_over_commit_the_limit():
    consumer = ConsumerFactory(profile__credit_limit_amount=Decimal("100.00"))

    _assert_one_wins(consumer, _race(consumer), {"insufficient_limit"})


def test_two_orders_at_once_never_over_commit_the_personal_spend_cap():
    consumer = ConsumerFactory(
        profile__credit_limit_amount=Decimal("1000.00"), profile__spend_cap_amount=Decimal("100.00")
    )

    _assert_one_wins(consumer, _race(consumer), {"insufficient_limit", "spend_cap_reached"})
