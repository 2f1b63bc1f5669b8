"""The charge run's batched scoring (``features_on_promises_kept``) against the one-record path."""

from __future__ import annotations

from decimal import Decimal
from itertools import count

import pytest
from django.utils import timezone

from consumers.choices import PromiseOutcome
from consumers.models import CreditProfile, LimitChange, PromiseRecord
from consumers.services import credit_holds_release_many, promise_record_add, promise_records_add_many
from scoring.models import ConsumerFeatures
from scoring.services import features_on_promise_record, features_on_promises_kept
from tests.factories import ConsumerFactory, MerchantFactory

pytestmark = pytest.mark.django_db
ORDER_IDS = count(50_000)


def one_by_one(consumer, merchant, n):
    for _ in range(n):
        written = promise_record_add(
            consumer=consumer,
            merchant_id=merchant.pk,
            order_id=next(ORDER_IDS),
            outcome=PromiseOutcome.FULFILLED,
            amount=Decimal("5.00"),
            recorded_at=timezone.now(),
        )
        features_on_promise_record(actor=None, record=written)


def batched(pairs):
    """One batch for ``[(consumer, merchant), …]``: one fulfilled record per pair."""
    records = promise_records_add_many(
        records=[
            PromiseRecord(
                consumer=consumer,
                merchant_id=merchant.pk,
                order_id=next(ORDER_IDS),
                outcome=PromiseOutcome.FULFILLED,
                amount=Decimal("5.00"),
                recorded_at=timezone.now(),
            )
            for consumer, merchant in pairs
        ]
    )
    features_on_promises_kept(actor=None, records=records)


def state(consumer):
    features = ConsumerFeatures.objects.get(pk=consumer.pk)
    profile = CreditProfile.objects.get(consumer=consumer)
    limits = list(
        LimitChange.objects.filter(profile=profile).values_list("reason_code", "before_amount", "after_amount")
    )
    return (
        features.fulfilled_count,
        sorted(features.kept_merchant_ids),
        features.open_orders,
        profile.score,
        profile.credit_limit_amount,
        limits,
    )


def test_batch_gives_the_features_score_and_limit_of_the_one_record_path():
    merchant = MerchantFactory()
    alone, together = ConsumerFactory(), ConsumerFactory()
    # Four kept promises each the ordinary way; the fifth earns a limit step and moves the score.
    one_by_one(alone, merchant, 4)
    one_by_one(together, merchant, 4)
    bystander = ConsumerFactory()

    one_by_one(alone, merchant, 1)
    batched([(together, merchant), (bystander, merchant)])

    assert state(together) == state(alone)
    assert state(together)[5], "the fifth kept promise grows the limit"
    assert ConsumerFeatures.objects.get(pk=bystander.pk).fulfilled_count == 1


def test_two_records_of_one_consumer_in_a_batch_count_twice_and_cross_the_growth_step():
    merchant, other = MerchantFactory(), MerchantFactory()
    consumer = ConsumerFactory()
    one_by_one(consumer, merchant, 3)
    batched([(consumer, merchant), (consumer, other)])
    features = ConsumerFeatures.objects.get(pk=consumer.pk)
    assert features.fulfilled_count == 5
    assert sorted(features.kept_merchant_ids) == sorted([merchant.pk, other.pk])
    assert LimitChange.objects.filter(profile__consumer=consumer).count() == 1


def test_batch_refuses_other_outcomes():
    consumer = ConsumerFactory()
    record = PromiseRecord(consumer=consumer, merchant_id=1, order_id=1, outcome=PromiseOutcome.BREACHED)
    with pytest.raises(ValueError):
        features_on_promises_kept(actor=None, records=[record])


def test_releasing_more_than_held_in_a_batch_changes_nothing():
    held, empty = ConsumerFactory(), ConsumerFactory()
    CreditProfile.objects.filter(consumer=held).update(open_exposure_amount=Decimal("30.00"))
    with pytest.raises(RuntimeError):
        credit_holds_release_many(amounts={held.pk: Decimal("10.00"), empty.pk: Decimal("1.00")})
    assert CreditProfile.objects.get(consumer=held).open_exposure_amount == Decimal("30.00")
    credit_holds_release_many(amounts={held.pk: Decimal("10.00")})
    assert CreditProfile.objects.get(consumer=held).open_exposure_amount == Decimal("20.00")
