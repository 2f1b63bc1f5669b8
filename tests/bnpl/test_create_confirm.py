"""Placing credit orders (both confirmation modes) and confirming them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

import bnpl.services
from bnpl import services
from bnpl.choices import ActorKind, OrderStatus
from bnpl.exceptions import InvalidTransition, NotAllowed, ValidationFailed
from bnpl.models import CreditOrder, OrderEvent
from consumers.models import CreditProfile
from merchants.choices import ListingStatus, MerchantStatus
from scoring.choices import ReasonCode
from scoring.models import AdmissionDecision
from tests.bnpl.helpers import exposure, snapshot
from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory

S = OrderStatus
pytestmark = pytest.mark.django_db


def create(merchant_user, listing, out_order_no="O-1", **kwargs):
    return services.credit_order_create(
        actor=merchant_user,
        actor_kind=ActorKind.MERCHANT,
        merchant=listing.merchant,
        listing=listing,
        out_order_no=out_order_no,
        **kwargs,
    )


def transitions(order):
    return list(OrderEvent.objects.filter(order=order).values_list("from_status", "to_status"))


@pytest.fixture
def agreement(agreement_listing, consumer):
    return services.agreement_sign(actor=consumer.user, consumer=consumer, listing=agreement_listing)


# --------------------------------------------------------------------------- confirm each time


def test_create_each_time_is_pending_with_token_and_expiry(listing, merchant_user):
    before = timezone.now()
    order = create(merchant_user, listing, title="A1 号桩充电")

    order.refresh_from_db()
    assert order.status == S.PENDING_CONFIRMATION
    assert len(order.confirmation_token) == 43  # token_urlsafe(32)
    assert before + timedelta(minutes=30) <= order.expires_at <= timezone.now() + timedelta(minutes=30)
    assert order.max_amount == Decimal("20.00")
    assert order.hold_amount == Decimal("0.00")
    assert order.consumer is None
    assert order.title == "A1 号桩充电"
    assert (order.scenario, order.confirm_mode, order.pricing_rule) == (
        listing.scenario,
        listing.confirm_mode,
        listing.pricing_rule,
    )
    assert transitions(order) == [("", S.CREATED), (S.CREATED, S.PENDING_CONFIRMATION)]
    assert set(OrderEvent.objects.filter(order=order).values_list("actor", "actor_kind")) == {
        (merchant_user.pk, ActorKind.MERCHANT)
    }


def test_create_copies_the_pricing_rule_so_later_price_changes_do_not_touch_it(listing, merchant_user):
    order = create(merchant_user, listing)
    listing.pricing_rule = {**listing.pricing_rule, "unit_price": "3.00"}
    listing.save()
    order.refresh_from_db()
    assert order.pricing_rule["unit_price"] == "1.00"


def test_create_with_known_consumer_keeps_it_and_takes_no_hold(listing, merchant_user, consumer):
    order = create(merchant_user, listing, consumer=consumer, max_amount="15.50")
    assert (order.status, order.consumer, order.max_amount) == (S.PENDING_CONFIRMATION, consumer, Decimal("15.50"))
    assert exposure(consumer) == Decimal("0.00")
    assert AdmissionDecision.objects.count() == 0


@pytest.mark.parametrize("max_amount", ["0", "-1", "20.01", "1.005", 3.5, "abc"])
def test_create_refuses_bad_max_amount(listing, merchant_user, max_amount):
    with pytest.raises(ValidationFailed) as refused:
        create(merchant_user, listing, max_amount=max_amount)
    assert list(refused.value.fields) == ["max_amount"]
    assert CreditOrder.objects.count() == 0


def test_create_refuses_duplicate_out_order_no(listing, merchant_user):
    first = create(merchant_user, listing, out_order_no="O-1")
    with pytest.raises(ValidationFailed) as refused:
        create(merchant_user, listing, out_order_no="O-1")
    assert refused.value.code == "duplicate_out_order_no"
    assert list(refused.value.fields) == ["out_order_no"]
    assert list(CreditOrder.objects.values_list("pk", flat=True)) == [first.pk]


def test_same_out_order_no_is_fine_at_another_merchant(listing, merchant_user):
    other = ListingFactory()
    create(merchant_user, listing, out_order_no="O-1")
    create(merchant_user, other, out_order_no="O-1")
    assert CreditOrder.objects.filter(out_order_no="O-1").count() == 2


def test_create_refuses_listing_of_another_merchant(listing, merchant_user):
    with pytest.raises(ValidationFailed) as refused:
        services.credit_order_create(
            actor=merchant_user,
            actor_kind=ActorKind.MERCHANT,
            merchant=MerchantFactory(),
            listing=listing,
            out_order_no="O-1",
        )
    assert list(refused.value.fields) == ["listing"]
    assert CreditOrder.objects.count() == 0


def test_create_refuses_paused_listing_and_unapproved_merchant(listing, merchant_user):
    listing.status = ListingStatus.PAUSED
    listing.save()
    with pytest.raises(NotAllowed) as refused:
        create(merchant_user, listing)
    assert refused.value.code == "listing_unavailable"

    listing.status = ListingStatus.ACTIVE
    listing.save()
    listing.merchant.status = MerchantStatus.SUSPENDED
    listing.merchant.save()
    with pytest.raises(NotAllowed) as refused:
        create(merchant_user, listing)
    assert refused.value.code == "merchant_unavailable"
    assert CreditOrder.objects.count() == 0


# --------------------------------------------------------------------------- agreement listings


def test_agreement_order_approved_is_active_with_hold(agreement_listing, agreement, merchant_user, consumer):
    order = create(merchant_user, agreement_listing, consumer=consumer, max_amount="12.00")

    order.refresh_from_db()
    assert order.status == S.ACTIVE
    assert order.agreement == agreement
    assert order.hold_amount == Decimal("12.00")
    assert order.confirmed_at is not None
    assert order.confirmation_token is None
    assert order.decision.channel == "order"
    assert order.decision.approved
    assert exposure(consumer) == Decimal("12.00")
    assert transitions(order) == [("", S.CREATED), (S.CREATED, S.ACTIVE)]


def test_agreement_order_declined_by_score_has_reasons_and_no_hold(agreement_listing, merchant_user):
    consumer = ConsumerFactory()
    services.agreement_sign(actor=consumer.user, consumer=consumer, listing=agreement_listing)
    CreditProfile.objects.filter(consumer=consumer).update(score=500)

    order = create(merchant_user, agreement_listing, consumer=consumer)

    order.refresh_from_db()
    assert order.status == S.DECLINED
    assert order.hold_amount == Decimal("0.00")
    assert exposure(consumer) == Decimal("0.00")
    assert not order.decision.approved
    declined = OrderEvent.objects.get(order=order, to_status=S.DECLINED)
    assert [r["code"] for r in declined.data["reasons"]] == ["score_below_minimum"]
    assert declined.data["decision_id"] == order.decision_id


def test_agreement_order_declined_when_the_hold_finds_the_limit_taken(
    agreement_listing, agreement, merchant_user, consumer, monkeypatch
):
    """The assessment approved, but another order took the limit before the hold: a decline, not an error."""
    real_assess = bnpl.services.admission_assess

    def assess_then_limit_taken(**kwargs):
        decision = real_assess(**kwargs)
        CreditProfile.objects.filter(consumer=consumer).update(open_exposure_amount=Decimal("995.00"))
        return decision

    monkeypatch.setattr(bnpl.services, "admission_assess", assess_then_limit_taken)
    order = create(merchant_user, agreement_listing, consumer=consumer, max_amount="10.00")

    order.refresh_from_db()
    assert order.status == S.DECLINED
    assert order.decision.approved
    assert order.hold_amount == Decimal("0.00")
    assert exposure(consumer) == Decimal("995.00")
    declined = OrderEvent.objects.get(order=order, to_status=S.DECLINED)
    assert [r["code"] for r in declined.data["reasons"]] == ["insufficient_limit"]


def test_agreement_order_needs_consumer_and_valid_agreement(agreement_listing, merchant_user, consumer):
    with pytest.raises(ValidationFailed) as refused:
        create(merchant_user, agreement_listing)
    assert refused.value.code == "agreement_required"
    with pytest.raises(ValidationFailed) as refused:
        create(merchant_user, agreement_listing, consumer=consumer)
    assert refused.value.code == "agreement_required"
    assert CreditOrder.objects.count() == 0


def test_agreement_order_refuses_another_consumers_agreement(agreement_listing, agreement, merchant_user):
    stranger = ConsumerFactory()
    with pytest.raises(ValidationFailed) as refused:
        create(merchant_user, agreement_listing, consumer=stranger, agreement=agreement)
    assert refused.value.code == "agreement_required"
    assert CreditOrder.objects.count() == 0
    assert exposure(stranger) == Decimal("0.00")


# --------------------------------------------------------------------------- confirm


def test_confirm_approved_activates_with_hold_and_spends_the_token(listing, merchant_user, consumer):
    order = create(merchant_user, listing)
    token = order.confirmation_token

    confirmed = services.credit_order_confirm(actor=consumer.user, order=order, consumer=consumer)

    confirmed.refresh_from_db()
    assert confirmed.status == S.ACTIVE
    assert confirmed.consumer == consumer
    assert confirmed.hold_amount == Decimal("20.00")
    assert confirmed.confirmation_token is None
    assert confirmed.decision.channel == "confirm"
    assert exposure(consumer) == Decimal("20.00")
    assert not CreditOrder.objects.filter(confirmation_token=token).exists()
    event = OrderEvent.objects.get(order=order, to_status=S.ACTIVE)
    assert (event.actor, event.actor_kind) == (consumer.user, ActorKind.CONSUMER)


def test_confirm_declined_returns_declined_order_with_reasons(listing, merchant_user):
    consumer = ConsumerFactory(profile__score=500)
    order = create(merchant_user, listing)

    declined = services.credit_order_confirm(actor=consumer.user, order=order, consumer=consumer)

    declined.refresh_from_db()
    assert declined.status == S.DECLINED
    assert declined.confirmation_token is None
    assert declined.hold_amount == Decimal("0.00")
    assert exposure(consumer) == Decimal("0.00")
    event = OrderEvent.objects.get(order=order, to_status=S.DECLINED)
    assert event.data["reasons"] == [
        {"code": "score_below_minimum", "message": str(ReasonCode.SCORE_BELOW_MINIMUM.label)}
    ]


def test_confirm_by_another_consumer_is_refused(listing, merchant_user, consumer):
    order = create(merchant_user, listing, consumer=consumer)
    before = snapshot(order)
    stranger = ConsumerFactory()
    with pytest.raises(NotAllowed) as refused:
        services.credit_order_confirm(actor=stranger.user, order=order, consumer=stranger)
    assert refused.value.code == "wrong_consumer"
    assert snapshot(order) == before
    assert exposure(stranger) == Decimal("0.00")


def test_confirm_after_deadline_is_refused_and_left_to_the_expiry_job(listing, merchant_user, consumer):
    order = create(merchant_user, listing)
    CreditOrder.objects.filter(pk=order.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    before = snapshot(order)
    with pytest.raises(NotAllowed) as refused:
        services.credit_order_confirm(actor=consumer.user, order=order, consumer=consumer)
    assert refused.value.code == "expired"
    assert snapshot(order) == before
    assert before["order"]["status"] == S.PENDING_CONFIRMATION
    assert exposure(consumer) == Decimal("0.00")


def test_confirm_twice_is_refused_the_second_time(listing, merchant_user, consumer):
    order = create(merchant_user, listing)
    services.credit_order_confirm(actor=consumer.user, order=order, consumer=consumer)
    before = snapshot(order)
    with pytest.raises(InvalidTransition, match="is active; it cannot be confirmed"):
        services.credit_order_confirm(actor=consumer.user, order=order, consumer=consumer)
    assert snapshot(order) == before
    assert exposure(consumer) == Decimal("20.00")
