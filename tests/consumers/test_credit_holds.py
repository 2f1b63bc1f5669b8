"""Credit holds: the conditional UPDATE behind invariant 3 (open exposure never exceeds the limit)."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from django.db import connection, transaction

from bnpl.exceptions import InsufficientCredit, ValidationFailed
from consumers.models import Consumer, CreditProfile
from consumers.services import credit_hold_acquire, credit_hold_release
from tests.factories import ConsumerFactory


def _profile(consumer: Consumer) -> CreditProfile:
    return CreditProfile.objects.get(consumer=consumer)


@pytest.mark.django_db
def test_acquire_within_limit_adds_exactly_the_amount_to_exposure():
    consumer = ConsumerFactory(profile__credit_limit_amount=Decimal("100.00"))

    credit_hold_acquire(consumer=consumer, amount=Decimal("60.00"))
    credit_hold_acquire(consumer=consumer, amount=Decimal("40.00"))

    profile = _profile(consumer)
    assert profile.open_exposure_amount == Decimal("100.00")
    assert profile.available_amount == Decimal("0.00")
    assert profile.credit_limit_amount == Decimal("100.00")


@pytest.mark.django_db
def test_acquire_over_available_limit_is_refused_and_changes_nothing():
    consumer = ConsumerFactory(profile__credit_limit_amount=Decimal("100.00"))
    credit_hold_acquire(consumer=consumer, amount=Decimal("60.00"))

    with pytest.raises(InsufficientCredit) as exc_info:
        credit_hold_acquire(consumer=consumer, amount=Decimal("40.01"))

    assert exc_info.value.code == "insufficient_limit"
    profile = _profile(consumer)
    assert profile.open_exposure_amount == Decimal("60.00")
    assert profile.available_amount == Decimal("40.00")


@pytest.mark.django_db
@pytest.mark.parametrize("amount", [Decimal("0.00"), Decimal("-1.00")])
def test_acquire_rejects_a_non_positive_amount(amount):
    consumer = ConsumerFactory()

    with pytest.raises(ValidationFailed) as exc_info:
        credit_hold_acquire(consumer=consumer, amount=amount)

    assert set(exc_info.value.fields) == {"amount"}
    assert _profile(consumer).open_exposure_amount == Decimal("0.00")


@pytest.mark.django_db
def test_release_gives_back_exactly_the_amount():
    consumer = ConsumerFactory(profile__credit_limit_amount=Decimal("100.00"))
    credit_hold_acquire(consumer=consumer, amount=Decimal("60.00"))

    credit_hold_release(consumer=consumer, amount=Decimal("25.50"))

    profile = _profile(consumer)
    assert profile.open_exposure_amount == Decimal("34.50")
    assert profile.available_amount == Decimal("65.50")


@pytest.mark.django_db
def test_release_of_zero_changes_nothing():
    consumer = ConsumerFactory(profile__open_exposure_amount=Decimal("10.00"))

    credit_hold_release(consumer=consumer, amount=Decimal("0.00"))

    assert _profile(consumer).open_exposure_amount == Decimal("10.00")


@pytest.mark.django_db
def test_release_of_more_than_is_held_is_a_bug_and_changes_nothing():
    consumer = ConsumerFactory(profile__credit_limit_amount=Decimal("100.00"))
    credit_hold_acquire(consumer=consumer, amount=Decimal("60.00"))

    with pytest.raises(RuntimeError):
        credit_hold_release(consumer=consumer, amount=Decimal("60.01"))

    assert _profile(consumer).open_exposure_amount == Decimal("60.00")


@pytest.mark.django_db
def test_release_rejects_a_negative_amount():
    consumer = ConsumerFactory(profile__open_exposure_amount=Decimal("10.00"))

    with pytest.raises(ValidationFailed):
        credit_hold_release(consumer=consumer, amount=Decimal("-1.00"))

    assert _profile(consumer).open_exposure_amount == Decimal("10.00")


def _race(*, consumer_id: int, amount: Decimal, threads: int) -> list[str]:
    """Start ``threads`` holds of ``amount`` at the same instant, each on its own connection.

    Each hold runs in its own transaction, like a bnpl order service, and keeps it open a
    moment after the UPDATE so the others really queue on the row lock.
    """
    barrier = threading.Barrier(threads)
    results: list[str] = []
    results_lock = threading.Lock()

    def worker() -> None:
        outcome = "not run"
        try:
            consumer = Consumer.objects.get(pk=consumer_id)
            barrier.wait(timeout=10)
            with transaction.atomic():
                credit_hold_acquire(consumer=consumer, amount=amount)
                time.sleep(0.05)
            outcome = "held"
        except InsufficientCredit:
            outcome = "refused"
        except Exception as exc:  # surfaced by the assertions below
            outcome = f"error: {exc!r}"
        finally:
            connection.close()
        with results_lock:
            results.append(outcome)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=60)
    return results


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_holds_cannot_both_take_the_last_of_the_limit():
    consumer = ConsumerFactory(profile__credit_limit_amount=Decimal("100.00"))

    results = _race(consumer_id=consumer.pk, amount=Decimal("60.00"), threads=2)

    assert sorted(results) == ["held", "refused"]
    profile = _profile(consumer)
    assert profile.open_exposure_amount == Decimal("60.00")
    assert profile.available_amount == Decimal("40.00")


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_holds_fill_the_limit_and_never_exceed_it():
    consumer = ConsumerFactory(profile__credit_limit_amount=Decimal("100.00"))

    results = _race(consumer_id=consumer.pk, amount=Decimal("15.00"), threads=10)

    assert results.count("held") == 6
    assert results.count("refused") == 4
    assert len(results) == 10
    profile = _profile(consumer)
    assert profile.open_exposure_amount == Decimal("90.00")
    assert profile.available_amount == Decimal("10.00")
