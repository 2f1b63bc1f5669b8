"""Standing agreements: sign once, close only when no order under them is open."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bnpl import services
from bnpl.choices import ActorKind, AgreementStatus, OrderStatus
from bnpl.exceptions import InvalidTransition, NotAllowed, ValidationFailed
from bnpl.models import Agreement
from merchants.choices import MerchantStatus
from scoring.choices import ReasonCode
from scoring.models import AdmissionDecision
from tests.factories import ConsumerFactory

S = OrderStatus
pytestmark = pytest.mark.django_db


def sign(consumer, listing):
    return services.agreement_sign(actor=consumer.user, consumer=consumer, listing=listing)


def test_sign_creates_a_valid_agreement_after_assessment(agreement_listing, consumer):
    agreement = sign(consumer, agreement_listing)
    agreement.refresh_from_db()
    assert (agreement.status, agreement.consumer, agreement.merchant, agreement.listing) == (
        AgreementStatus.VALID,
        consumer,
        agreement_listing.merchant,
        agreement_listing,
    )
    assert agreement.signed_at is not None
    assert list(AdmissionDecision.objects.values_list("channel", "outcome")) == [("sign_up", "approved")]


def test_sign_twice_returns_the_same_agreement(agreement_listing, consumer):
    first = sign(consumer, agreement_listing)
    second = sign(consumer, agreement_listing)
    assert second.pk == first.pk
    assert Agreement.objects.count() == 1
    assert AdmissionDecision.objects.count() == 1  # no second assessment for an existing agreement


def test_sign_declined_raises_cannot_open_with_reasons_and_keeps_the_decision(agreement_listing):
    consumer = ConsumerFactory(profile__score=500)
    with pytest.raises(NotAllowed) as refused:
        sign(consumer, agreement_listing)
    assert (refused.value.code, refused.value.message) == ("declined", "Cannot open for now")
    assert refused.value.reasons == [
        {"code": "score_below_minimum", "message": str(ReasonCode.SCORE_BELOW_MINIMUM.label)}
    ]
    decision = AdmissionDecision.objects.get()
    assert (decision.pk, decision.outcome, decision.channel) == (refused.value.decision_id, "declined", "sign_up")
    assert Agreement.objects.count() == 0


def test_sign_refuses_each_time_listing_and_unapproved_merchant(listing, agreement_listing, consumer):
    with pytest.raises(ValidationFailed) as refused:
        sign(consumer, listing)
    assert refused.value.code == "not_agreement_listing"
    agreement_listing.merchant.status = MerchantStatus.SUSPENDED
    agreement_listing.merchant.save()
    with pytest.raises(NotAllowed) as refused:
        sign(consumer, agreement_listing)
    assert refused.value.code == "merchant_unavailable"
    assert Agreement.objects.count() == 0
    assert AdmissionDecision.objects.count() == 0


def test_close_is_refused_while_an_order_is_open_then_allowed_after_cancel(agreement_listing, consumer, merchant_user):
    agreement = sign(consumer, agreement_listing)
    order = services.credit_order_create(
        actor=merchant_user,
        actor_kind=ActorKind.MERCHANT,
        merchant=agreement_listing.merchant,
        listing=agreement_listing,
        out_order_no="O-1",
        consumer=consumer,
    )
    assert order.status == S.ACTIVE

    with pytest.raises(NotAllowed) as refused:
        services.agreement_close(actor=consumer.user, agreement=agreement, reason="不用了")
    assert refused.value.code == "order_open"
    assert refused.value.message == "The agreement cannot be closed while an order under it is still open."
    agreement.refresh_from_db()
    assert (agreement.status, agreement.closed_at, agreement.close_reason) == (AgreementStatus.VALID, None, "")

    services.credit_order_cancel(actor=consumer.user, actor_kind=ActorKind.CONSUMER, order=order, reason="不用了")
    services.agreement_close(actor=consumer.user, agreement=agreement, reason="不用了")
    agreement.refresh_from_db()
    assert (agreement.status, agreement.close_reason) == (AgreementStatus.CLOSED, "不用了")
    assert agreement.closed_at is not None


def test_closed_agreement_takes_no_orders_and_can_be_signed_anew(agreement_listing, consumer, merchant_user):
    agreement = sign(consumer, agreement_listing)
    services.agreement_close(actor=consumer.user, agreement=agreement)
    with pytest.raises(InvalidTransition, match="is closed; it cannot be closed"):
        services.agreement_close(actor=consumer.user, agreement=agreement)
    with pytest.raises(ValidationFailed) as refused:
        services.credit_order_create(
            actor=merchant_user,
            actor_kind=ActorKind.MERCHANT,
            merchant=agreement_listing.merchant,
            listing=agreement_listing,
            out_order_no="O-1",
            consumer=consumer,
            agreement=agreement,
        )
    assert refused.value.code == "agreement_required"

    renewed = sign(consumer, agreement_listing)
    assert renewed.pk != agreement.pk
    assert list(Agreement.objects.order_by("pk").values_list("status", flat=True)) == ["closed", "valid"]


def test_close_counts_only_orders_under_this_agreement(agreement_listing, consumer, merchant_user):
    agreement = sign(consumer, agreement_listing)
    other = ConsumerFactory()
    sign(other, agreement_listing)
    services.credit_order_create(
        actor=merchant_user,
        actor_kind=ActorKind.MERCHANT,
        merchant=agreement_listing.merchant,
        listing=agreement_listing,
        out_order_no="O-1",
        consumer=other,
        max_amount=Decimal("5.00"),
    )
    services.agreement_close(actor=consumer.user, agreement=agreement)
    agreement.refresh_from_db()
    assert agreement.status == AgreementStatus.CLOSED
