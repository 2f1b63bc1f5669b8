"""Limit changes, pauses and score changes on the credit profile."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bnpl.exceptions import InsufficientCredit, NotAllowed, ValidationFailed
from consumers.choices import LimitChangeReason
from consumers.models import CreditProfile, LimitChange
from consumers.services import (
    credit_hold_acquire,
    credit_limit_set,
    credit_profile_pause,
    credit_profile_unpause,
    credit_score_set,
)
from tests.factories import ConsumerFactory


def _profile(consumer) -> CreditProfile:
    return CreditProfile.objects.get(consumer=consumer)


# --- credit_limit_set ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_limit_change_records_before_after_reason_and_actor(consumer, staff_user):
    change = credit_limit_set(
        actor=staff_user, consumer=consumer, amount="1500.50", reason_code="staff", reason="  Long good history  "
    )

    change = LimitChange.objects.get(pk=change.pk)
    assert change.profile == consumer.credit_profile
    assert change.before_amount == Decimal("1000.00")
    assert change.after_amount == Decimal("1500.50")
    assert change.reason_code == LimitChangeReason.STAFF
    assert change.reason == "Long good history"
    assert change.actor == staff_user
    profile = _profile(consumer)
    assert profile.credit_limit_amount == Decimal("1500.50")
    assert profile.available_amount == Decimal("1500.50")
    assert LimitChange.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("reason", ["", "   "])
def test_staff_limit_change_without_a_reason_is_refused_and_changes_nothing(consumer, staff_user, reason):
    with pytest.raises(ValidationFailed) as exc_info:
        credit_limit_set(actor=staff_user, consumer=consumer, amount="1500.00", reason_code="staff", reason=reason)

    assert set(exc_info.value.fields) == {"reason"}
    assert _profile(consumer).credit_limit_amount == Decimal("1000.00")
    assert LimitChange.objects.count() == 0


@pytest.mark.django_db
def test_system_limit_change_may_omit_the_reason(consumer):
    change = credit_limit_set(actor=None, consumer=consumer, amount=Decimal("1200.00"), reason_code="growth", reason="")

    assert (change.before_amount, change.after_amount, change.actor) == (Decimal("1000.00"), Decimal("1200.00"), None)
    assert _profile(consumer).credit_limit_amount == Decimal("1200.00")


@pytest.mark.django_db
@pytest.mark.parametrize("amount", ["12.345", "-1.00", "abc", 12.5, "1e12"])
def test_invalid_limit_amount_is_refused_and_changes_nothing(consumer, staff_user, amount):
    with pytest.raises(ValidationFailed) as exc_info:
        credit_limit_set(actor=staff_user, consumer=consumer, amount=amount, reason_code="staff", reason="why")

    assert set(exc_info.value.fields) == {"amount"}
    assert _profile(consumer).credit_limit_amount == Decimal("1000.00")
    assert LimitChange.objects.count() == 0


@pytest.mark.django_db
def test_unknown_reason_code_is_refused(consumer, staff_user):
    with pytest.raises(ValidationFailed) as exc_info:
        credit_limit_set(actor=staff_user, consumer=consumer, amount="1500", reason_code="whim", reason="why")

    assert set(exc_info.value.fields) == {"reason_code"}
    assert _profile(consumer).credit_limit_amount == Decimal("1000.00")
    assert LimitChange.objects.count() == 0


@pytest.mark.django_db
def test_setting_the_same_limit_is_refused_without_a_history_row(consumer, staff_user):
    with pytest.raises(ValidationFailed) as exc_info:
        credit_limit_set(actor=staff_user, consumer=consumer, amount="1000.00", reason_code="staff", reason="why")

    assert exc_info.value.code == "limit_unchanged"
    assert LimitChange.objects.count() == 0


@pytest.mark.django_db
def test_limit_may_be_cut_below_the_open_exposure_and_then_no_new_hold_fits(staff_user):
    consumer = ConsumerFactory(profile__credit_limit_amount=Decimal("1000.00"))
    credit_hold_acquire(consumer=consumer, amount=Decimal("800.00"))

    change = credit_limit_set(actor=staff_user, consumer=consumer, amount="500", reason_code="staff", reason="risk")

    assert (change.before_amount, change.after_amount) == (Decimal("1000.00"), Decimal("500.00"))
    profile = _profile(consumer)
    assert profile.credit_limit_amount == Decimal("500.00")
    assert profile.open_exposure_amount == Decimal("800.00")
    assert profile.available_amount == Decimal("-300.00")
    with pytest.raises(InsufficientCredit):
        credit_hold_acquire(consumer=consumer, amount=Decimal("0.01"))
    assert _profile(consumer).open_exposure_amount == Decimal("800.00")


@pytest.mark.django_db
def test_limit_may_be_set_to_zero(consumer, staff_user):
    credit_limit_set(actor=staff_user, consumer=consumer, amount="0", reason_code="staff", reason="fraud suspicion")

    assert _profile(consumer).credit_limit_amount == Decimal("0.00")


# --- pause / unpause ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_pause_sets_the_flag_and_keeps_the_reason(consumer, staff_user):
    profile = credit_profile_pause(actor=staff_user, consumer=consumer, reason="  Order #12 overdue  ")

    assert (profile.is_paused, profile.paused_reason) == (True, "Order #12 overdue")
    fresh = _profile(consumer)
    assert (fresh.is_paused, fresh.paused_reason) == (True, "Order #12 overdue")


@pytest.mark.django_db
@pytest.mark.parametrize("reason", ["", "  ", "x" * 201])
def test_pause_without_a_usable_reason_is_refused_and_changes_nothing(consumer, staff_user, reason):
    with pytest.raises(ValidationFailed) as exc_info:
        credit_profile_pause(actor=staff_user, consumer=consumer, reason=reason)

    assert set(exc_info.value.fields) == {"reason"}
    fresh = _profile(consumer)
    assert (fresh.is_paused, fresh.paused_reason) == (False, "")


@pytest.mark.django_db
def test_pausing_a_paused_profile_is_not_allowed_and_keeps_the_first_reason(consumer, staff_user):
    credit_profile_pause(actor=staff_user, consumer=consumer, reason="first")

    with pytest.raises(NotAllowed) as exc_info:
        credit_profile_pause(actor=staff_user, consumer=consumer, reason="second")

    assert exc_info.value.code == "already_paused"
    fresh = _profile(consumer)
    assert (fresh.is_paused, fresh.paused_reason) == (True, "first")


@pytest.mark.django_db
def test_unpause_clears_the_flag_and_the_reason(consumer, staff_user):
    credit_profile_pause(actor=staff_user, consumer=consumer, reason="overdue")

    profile = credit_profile_unpause(actor=None, consumer=consumer, reason="overdue order paid")

    assert (profile.is_paused, profile.paused_reason) == (False, "")
    fresh = _profile(consumer)
    assert (fresh.is_paused, fresh.paused_reason) == (False, "")


@pytest.mark.django_db
def test_unpausing_a_profile_that_is_not_paused_is_not_allowed(consumer, staff_user):
    with pytest.raises(NotAllowed) as exc_info:
        credit_profile_unpause(actor=staff_user, consumer=consumer, reason="why")

    assert exc_info.value.code == "not_paused"
    assert _profile(consumer).is_paused is False


@pytest.mark.django_db
def test_pause_and_limit_change_leave_exposure_and_each_other_alone(consumer, staff_user):
    credit_hold_acquire(consumer=consumer, amount=Decimal("20.00"))

    credit_profile_pause(actor=staff_user, consumer=consumer, reason="overdue")

    fresh = _profile(consumer)
    assert (fresh.credit_limit_amount, fresh.open_exposure_amount) == (Decimal("1000.00"), Decimal("20.00"))
    assert LimitChange.objects.count() == 0


# --- credit_score_set ---------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("score", "band"), [(350, "poor"), (549, "poor"), (550, "fair"), (700, "excellent"), (950, "excellent")]
)
def test_score_set_moves_the_score_and_the_band_follows(consumer, score, band):
    profile = credit_score_set(actor=None, consumer=consumer, score=score, reason="monthly refresh")

    assert (profile.score, profile.band) == (score, band)
    fresh = _profile(consumer)
    assert (fresh.score, fresh.band) == (score, band)
    assert fresh.credit_limit_amount == Decimal("1000.00")


@pytest.mark.django_db
@pytest.mark.parametrize("score", [349, 951, 600.0, "600", None])
def test_score_outside_350_to_950_is_refused_and_changes_nothing(consumer, score):
    with pytest.raises(ValidationFailed) as exc_info:
        credit_score_set(actor=None, consumer=consumer, score=score, reason="refresh")

    assert set(exc_info.value.fields) == {"score"}
    assert _profile(consumer).score == 650


@pytest.mark.django_db
def test_score_change_without_a_reason_is_refused(consumer):
    with pytest.raises(ValidationFailed) as exc_info:
        credit_score_set(actor=None, consumer=consumer, score=700, reason=" ")

    assert set(exc_info.value.fields) == {"reason"}
    assert _profile(consumer).score == 650


@pytest.mark.django_db
def test_pause_unpause_and_score_change_leave_events_naming_the_actor(consumer, staff_user):
    from consumers.models import CreditProfileEvent
    from consumers.services import credit_profile_pause, credit_profile_unpause, credit_score_set

    credit_profile_pause(actor=staff_user, consumer=consumer, reason="逾期未还")
    credit_profile_unpause(actor=None, consumer=consumer, reason="已还清")
    credit_score_set(actor=staff_user, consumer=consumer, score=700, reason="复核")
    events = list(
        CreditProfileEvent.objects.filter(profile__consumer=consumer).values_list("kind", "before", "after", "actor")
    )
    assert events == [
        ("paused", "active", "paused", staff_user.pk),
        ("unpaused", "paused", "active", None),
        ("score_changed", "650", "700", staff_user.pk),
    ]
