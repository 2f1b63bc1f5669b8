"""consumer_register: login, consumer and credit profile with a starting limit, all or nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser

from bnpl.exceptions import ValidationFailed
from consumers.choices import LimitChangeReason
from consumers.models import Consumer, CreditProfile, LimitChange
from consumers.services import INITIAL_LIMIT_BY_BAND, consumer_register

User = get_user_model()
STRONG_PASSWORD = "Xiang-Shou-2026!"


def _counts() -> tuple[int, int, int, int]:
    return (User.objects.count(), Consumer.objects.count(), CreditProfile.objects.count(), LimitChange.objects.count())


@pytest.mark.django_db
def test_register_creates_user_consumer_profile_and_initial_limit_change():
    consumer = consumer_register(actor=None, phone="+86 138-0013-8000", password=STRONG_PASSWORD, city=" 杭州 ")

    consumer = Consumer.objects.select_related("user").get(pk=consumer.pk)
    assert consumer.phone == "13800138000"
    assert consumer.city == "杭州"
    assert consumer.phone_verified is False
    assert consumer.verified_at is None
    assert consumer.user.username == "13800138000"
    assert consumer.user.check_password(STRONG_PASSWORD)
    profile = CreditProfile.objects.get(consumer=consumer)
    assert profile.score == 600
    assert profile.band == "good"
    assert profile.credit_limit_amount == Decimal("1000.00")
    assert profile.open_exposure_amount == Decimal("0.00")
    assert profile.available_amount == Decimal("1000.00")
    assert profile.is_paused is False
    changes = list(LimitChange.objects.filter(profile=profile).values())
    assert len(changes) == 1
    assert changes[0]["reason_code"] == LimitChangeReason.INITIAL
    assert changes[0]["before_amount"] == Decimal("0.00")
    assert changes[0]["after_amount"] == Decimal("1000.00")
    assert changes[0]["actor_id"] is None
    assert changes[0]["reason"] == "score 600, band good"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("score", "band", "limit"),
    [
        (350, "poor", Decimal("200.00")),
        (549, "poor", Decimal("200.00")),
        (550, "fair", Decimal("500.00")),
        (599, "fair", Decimal("500.00")),
        (600, "good", Decimal("1000.00")),
        (650, "very_good", Decimal("2000.00")),
        (699, "very_good", Decimal("2000.00")),
        (700, "excellent", Decimal("3000.00")),
        (950, "excellent", Decimal("3000.00")),
    ],
)
def test_initial_limit_follows_the_band_of_the_score(score, band, limit):
    consumer = consumer_register(actor=None, phone="13900001111", password=STRONG_PASSWORD, score=score)

    profile = CreditProfile.objects.get(consumer=consumer)
    assert profile.band == band
    assert profile.credit_limit_amount == limit
    assert LimitChange.objects.get(profile=profile).after_amount == limit
    assert INITIAL_LIMIT_BY_BAND[band] == limit


@pytest.mark.django_db
def test_register_records_the_staff_actor_and_a_given_username(staff_user):
    consumer = consumer_register(actor=staff_user, phone="13900002222", password=STRONG_PASSWORD, username="lihua")

    assert consumer.user.username == "lihua"
    assert LimitChange.objects.get(profile__consumer=consumer).actor == staff_user


@pytest.mark.django_db
def test_register_from_an_anonymous_request_records_no_actor():
    consumer = consumer_register(actor=AnonymousUser(), phone="13900003333", password=STRONG_PASSWORD)

    assert LimitChange.objects.get(profile__consumer=consumer).actor is None


@pytest.mark.django_db
def test_duplicate_phone_is_refused_and_creates_nothing():
    consumer_register(actor=None, phone="13800138000", password=STRONG_PASSWORD)
    before = _counts()

    with pytest.raises(ValidationFailed) as exc_info:
        # The same number written differently, with a different username: still the same phone.
        consumer_register(actor=None, phone="+86 138 0013 8000", password=STRONG_PASSWORD, username="other")

    assert set(exc_info.value.fields) == {"phone"}
    assert _counts() == before == (1, 1, 1, 1)
    assert not User.objects.filter(username="other").exists()


@pytest.mark.django_db
def test_taken_username_is_refused_and_creates_nothing():
    consumer_register(actor=None, phone="13800138000", password=STRONG_PASSWORD, username="lihua")
    before = _counts()

    with pytest.raises(ValidationFailed) as exc_info:
        consumer_register(actor=None, phone="13800138001", password=STRONG_PASSWORD, username="lihua")

    assert set(exc_info.value.fields) == {"username"}
    assert _counts() == before
    assert not Consumer.objects.filter(phone="13800138001").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("phone", ["12345", "23800138000", "1380013800a", ""])
def test_invalid_phone_is_refused_and_creates_nothing(phone):
    with pytest.raises(ValidationFailed) as exc_info:
        consumer_register(actor=None, phone=phone, password=STRONG_PASSWORD)

    assert set(exc_info.value.fields) == {"phone"}
    assert _counts() == (0, 0, 0, 0)


@pytest.mark.django_db
@pytest.mark.parametrize("password", ["12345678", "password", "short1!", "13800138000x"])
def test_weak_password_is_refused_and_creates_nothing(password):
    with pytest.raises(ValidationFailed) as exc_info:
        consumer_register(actor=None, phone="13800138000", password=password)

    assert set(exc_info.value.fields) == {"password"}
    assert exc_info.value.fields["password"]
    assert _counts() == (0, 0, 0, 0)


@pytest.mark.django_db
@pytest.mark.parametrize("score", [349, 951, True, "700"])
def test_score_outside_the_range_is_refused_and_creates_nothing(score):
    with pytest.raises(ValidationFailed) as exc_info:
        consumer_register(actor=None, phone="13800138000", password=STRONG_PASSWORD, score=score)

    assert set(exc_info.value.fields) == {"score"}
    assert _counts() == (0, 0, 0, 0)
