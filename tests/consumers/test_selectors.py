"""Consumer selectors return only the principal's own rows."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from consumers.models import Consumer
from consumers.selectors import (
    consumer_get_for_user,
    credit_profile_for_consumer,
    limit_changes_for_consumer,
    promise_records_for_consumer,
)
from consumers.services import credit_hold_acquire, credit_limit_set, promise_record_add
from tests.factories import ConsumerFactory, UserFactory


@pytest.mark.django_db
def test_consumer_get_for_user_returns_that_users_consumer(django_assert_num_queries):
    consumer = ConsumerFactory()
    ConsumerFactory()

    with django_assert_num_queries(1):
        found = consumer_get_for_user(user=consumer.user)
        assert found.credit_profile.credit_limit_amount == Decimal("1000.00")

    assert found == consumer


@pytest.mark.django_db
def test_consumer_get_for_user_refuses_a_user_who_is_not_a_consumer_or_anonymous():
    with pytest.raises(Consumer.DoesNotExist):
        consumer_get_for_user(user=UserFactory())
    with pytest.raises(Consumer.DoesNotExist):
        consumer_get_for_user(user=AnonymousUser())


@pytest.mark.django_db
def test_credit_profile_for_consumer_reads_fresh_values():
    consumer = ConsumerFactory()
    credit_hold_acquire(consumer=consumer, amount=Decimal("30.00"))

    profile = credit_profile_for_consumer(consumer=consumer)

    assert (profile.open_exposure_amount, profile.available_amount) == (Decimal("30.00"), Decimal("970.00"))


@pytest.mark.django_db
def test_promise_records_are_the_consumers_own_newest_first(merchant):
    mine, other = ConsumerFactory(), ConsumerFactory()
    now = timezone.now()
    for order_id, who, days_ago in [(1, mine, 3), (2, other, 2), (3, mine, 1)]:
        promise_record_add(
            consumer=who,
            merchant_id=merchant.pk,
            order_id=order_id,
            outcome="fulfilled",
            amount=Decimal("1.00"),
            recorded_at=now - timedelta(days=days_ago),
        )

    assert [r.order_id for r in promise_records_for_consumer(consumer=mine)] == [3, 1]


@pytest.mark.django_db
def test_limit_changes_are_the_consumers_own_newest_first(staff_user):
    mine, other = ConsumerFactory(), ConsumerFactory()
    credit_limit_set(actor=staff_user, consumer=mine, amount="1100", reason_code="staff", reason="a")
    credit_limit_set(actor=staff_user, consumer=other, amount="900", reason_code="staff", reason="b")
    credit_limit_set(actor=None, consumer=mine, amount="1200", reason_code="growth", reason="")

    changes = list(limit_changes_for_consumer(consumer=mine))

    assert [(c.before_amount, c.after_amount) for c in changes] == [
        (Decimal("1100.00"), Decimal("1200.00")),
        (Decimal("1000.00"), Decimal("1100.00")),
    ]
