"""守约记录: one per finished order; only a breached record can be recovered."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from bnpl.exceptions import ValidationFailed
from consumers.choices import PromiseOutcome
from consumers.models import PromiseRecord
from consumers.services import promise_record_add, promise_record_recover


def _add(consumer, merchant, *, order_id=1001, outcome=PromiseOutcome.FULFILLED, amount=Decimal("12.50"), at=None):
    return promise_record_add(
        consumer=consumer,
        merchant_id=merchant.pk,
        order_id=order_id,
        outcome=outcome,
        amount=amount,
        recorded_at=at or timezone.now(),
    )


@pytest.mark.django_db
def test_add_writes_one_record_with_exactly_the_given_values(consumer, merchant):
    at = timezone.now()

    _add(consumer, merchant, at=at)

    record = PromiseRecord.objects.get()
    assert (record.consumer, record.merchant, record.order_id) == (consumer, merchant, 1001)
    assert (record.outcome, record.amount, record.recorded_at) == ("fulfilled", Decimal("12.50"), at)


@pytest.mark.django_db
def test_a_second_record_for_the_same_order_raises_and_keeps_the_first(consumer, merchant):
    _add(consumer, merchant, outcome=PromiseOutcome.FULFILLED)

    with pytest.raises(IntegrityError), transaction.atomic():
        _add(consumer, merchant, outcome=PromiseOutcome.BREACHED, amount=Decimal("99.00"))

    record = PromiseRecord.objects.get()
    assert (record.outcome, record.amount) == ("fulfilled", Decimal("12.50"))


@pytest.mark.django_db
def test_an_unknown_outcome_is_refused(consumer, merchant):
    with pytest.raises(ValidationFailed) as exc_info:
        _add(consumer, merchant, outcome="forgiven")

    assert set(exc_info.value.fields) == {"outcome"}
    assert PromiseRecord.objects.count() == 0


@pytest.mark.django_db
def test_a_breached_record_recovers_with_the_new_time(consumer, merchant):
    breached_at = timezone.now() - timedelta(days=10)
    paid_at = timezone.now()
    _add(consumer, merchant, outcome=PromiseOutcome.BREACHED, at=breached_at)

    returned = promise_record_recover(order_id=1001, recorded_at=paid_at)

    record = PromiseRecord.objects.get()
    assert returned.pk == record.pk
    assert (record.outcome, record.recorded_at, record.amount) == ("recovered", paid_at, Decimal("12.50"))


@pytest.mark.django_db
@pytest.mark.parametrize("outcome", [PromiseOutcome.FULFILLED, PromiseOutcome.CANCELLED, PromiseOutcome.RECOVERED])
def test_only_a_breached_record_can_recover(consumer, merchant, outcome):
    at = timezone.now() - timedelta(days=1)
    _add(consumer, merchant, outcome=outcome, at=at)

    with pytest.raises(ValidationFailed) as exc_info:
        promise_record_recover(order_id=1001, recorded_at=timezone.now())

    assert exc_info.value.code == "invalid_state"
    record = PromiseRecord.objects.get()
    assert (record.outcome, record.recorded_at) == (outcome, at)


@pytest.mark.django_db
def test_recovering_an_unknown_order_raises_does_not_exist():
    with pytest.raises(PromiseRecord.DoesNotExist):
        promise_record_recover(order_id=424242, recorded_at=timezone.now())
