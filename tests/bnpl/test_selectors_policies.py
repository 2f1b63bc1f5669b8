"""Tenant-scoped reads (invariant 5) and the scenario charge policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bnpl import selectors, services
from bnpl.choices import OrderStatus
from bnpl.models import Agreement, CreditOrder
from bnpl.policies import SCENARIO_POLICIES, due_at_for, policy_for
from merchants.choices import ConfirmMode, Scenario
from tests.bnpl.helpers import order_in
from tests.factories import ConsumerFactory, ListingFactory

S = OrderStatus


@pytest.fixture
def two_tenants(db, listing, consumer):
    other_listing = ListingFactory()
    other_consumer = ConsumerFactory()
    mine = order_in(S.ACTIVE, listing=listing, consumer=consumer, out_order_no="O-1")
    theirs = order_in(S.ACTIVE, listing=other_listing, consumer=other_consumer, out_order_no="O-2")
    return mine, theirs


@pytest.mark.django_db
def test_merchant_selectors_see_only_own_orders(two_tenants, merchant):
    mine, theirs = two_tenants
    assert selectors.credit_order_get_for_merchant(merchant=merchant, order_id=mine.pk) == mine
    assert selectors.credit_order_get_for_merchant(merchant=merchant, order_id=str(mine.pk)) == mine
    assert selectors.credit_order_get_by_out_order_no(merchant=merchant, out_order_no="O-1") == mine
    assert list(selectors.credit_orders_for_merchant(merchant=merchant)) == [mine]
    for order_id in (theirs.pk, "abc", "", None, -1):
        with pytest.raises(CreditOrder.DoesNotExist):
            selectors.credit_order_get_for_merchant(merchant=merchant, order_id=order_id)
    with pytest.raises(CreditOrder.DoesNotExist):
        selectors.credit_order_get_by_out_order_no(merchant=merchant, out_order_no="O-2")


@pytest.mark.django_db
def test_consumer_selectors_see_only_own_orders(two_tenants, consumer):
    mine, theirs = two_tenants
    assert selectors.credit_order_get_for_consumer(consumer=consumer, order_id=mine.pk) == mine
    assert list(selectors.credit_orders_for_consumer(consumer=consumer)) == [mine]
    with pytest.raises(CreditOrder.DoesNotExist):
        selectors.credit_order_get_for_consumer(consumer=consumer, order_id=theirs.pk)


@pytest.mark.django_db
def test_token_finds_only_a_pending_order(listing):
    pending = order_in(S.PENDING_CONFIRMATION, listing=listing)
    assert selectors.credit_order_get_by_token(token=pending.confirmation_token) == pending
    for token in ("", "nope"):
        with pytest.raises(CreditOrder.DoesNotExist):
            selectors.credit_order_get_by_token(token=token)


@pytest.mark.django_db
def test_agreement_selector_is_scoped_to_the_consumer(merchant, consumer):
    listing = ListingFactory(merchant=merchant, confirm_mode=ConfirmMode.AGREEMENT)
    mine = services.agreement_sign(actor=None, consumer=consumer, listing=listing)
    other = ConsumerFactory()
    theirs = services.agreement_sign(actor=None, consumer=other, listing=listing)
    assert selectors.agreement_get_for_consumer(consumer=consumer, agreement_id=mine.pk) == mine
    for agreement_id in (theirs.pk, "x"):
        with pytest.raises(Agreement.DoesNotExist):
            selectors.agreement_get_for_consumer(consumer=consumer, agreement_id=agreement_id)


def test_every_scenario_has_a_policy():
    assert set(SCENARIO_POLICIES) == set(Scenario.values)
    with pytest.raises(LookupError):
        policy_for("car_wash")


@pytest.mark.parametrize(
    ("scenario", "delay"),
    [
        (Scenario.EBIKE_CHARGING, timedelta(0)),
        (Scenario.EXPRESS_DELIVERY, timedelta(0)),
        (Scenario.SWIMMING_FITNESS, timedelta(0)),
        (Scenario.LIVE_SHOPPING, timedelta(days=7)),
    ],
)
def test_due_at_follows_the_scenario(scenario, delay):
    completed_at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert due_at_for(CreditOrder(scenario=scenario), completed_at) == completed_at + delay
