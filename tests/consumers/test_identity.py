"""consumer_verify_identity: 实名认证 stores a keyed hash and a mask, never the clear number."""

from __future__ import annotations

import hashlib
import hmac
import logging

import pytest
from django.conf import settings
from django.core.cache import cache
from stdnum.cn import ric

from bnpl.exceptions import NotAllowed, ValidationFailed
from consumers.models import Consumer
from consumers.services import consumer_verify_identity, identity_hash
from tests.factories import ConsumerFactory


def make_resident_id(n: int, birth: str = "19900101") -> str:
    """A valid resident ID (Hangzhou Xihu district prefix), distinct for each ``n``.

    Local on purpose: ``tests.factories.make_resident_id`` passes the 17-digit body to
    ``stdnum.cn.ric.calc_check_digit``, which expects the number *with* a check digit
    and so drops a body digit; its numbers fail validation (reported to the lead).
    """
    body = f"330106{birth}{n % 1000:03d}"
    return body + ric.calc_check_digit(body + "0")


def _id_with_x_check_digit() -> str:
    return next(number for n in range(1000) if (number := make_resident_id(n)).endswith("X"))


def _unverified_state(consumer: Consumer) -> dict:
    return Consumer.objects.filter(pk=consumer.pk).values(
        "real_name", "id_number_hash", "id_number_masked", "verified_at"
    )[0]


UNVERIFIED = {"real_name": "", "id_number_hash": "", "id_number_masked": "", "verified_at": None}


@pytest.mark.django_db
def test_verify_stores_the_keyed_hash_and_the_mask_and_never_the_clear_number(consumer, caplog):
    number = make_resident_id(123)
    caplog.set_level(logging.DEBUG)

    result = consumer_verify_identity(actor=consumer.user, consumer=consumer, real_name=" 王小明 ", id_number=number)

    expected_hash = hmac.new(settings.IDENTITY_HASH_KEY.encode(), number.encode(), hashlib.sha256).hexdigest()
    row = Consumer.objects.filter(pk=consumer.pk).values()[0]
    assert row["real_name"] == "王小明"
    assert row["id_number_hash"] == expected_hash
    assert row["id_number_masked"] == f"3301**********{number[-4:]}"
    assert row["verified_at"] is not None
    assert result.verified_at == row["verified_at"]
    assert result.is_verified
    # Not in any column of the row, not even as a part of one, nor in any log line.
    assert all(number not in str(value) for value in row.values())
    assert all(number[6:14] not in str(value) for value in row.values())  # the birth date part
    assert all(number not in record.getMessage() for record in caplog.records)


@pytest.mark.django_db
def test_identity_hash_normalises_case_and_spaces():
    number = _id_with_x_check_digit()
    spaced_lower = f"{number[:6]} {number[6:14]} {number[14:].lower()}"

    assert identity_hash(spaced_lower) == identity_hash(number)
    assert len(identity_hash(number)) == 64


@pytest.mark.django_db
def test_verify_accepts_grouped_input_with_a_lowercase_x_and_masks_it_uppercase(consumer):
    number = _id_with_x_check_digit()
    typed = f" {number[:6]} {number[6:14]} {number[14:].lower()} "

    consumer_verify_identity(actor=None, consumer=consumer, real_name="王小明", id_number=typed)

    row = _unverified_state(consumer)
    assert row["id_number_hash"] == identity_hash(number)
    assert row["id_number_masked"] == f"3301**********{number[-4:]}"
    assert row["id_number_masked"].endswith("X")


@pytest.mark.django_db
def test_wrong_check_digit_is_a_field_error_and_saves_nothing(consumer):
    number = make_resident_id(7)
    wrong = number[:-1] + ("0" if number[-1] != "0" else "1")

    with pytest.raises(ValidationFailed) as exc_info:
        consumer_verify_identity(actor=None, consumer=consumer, real_name="王小明", id_number=wrong)

    assert set(exc_info.value.fields) == {"id_number"}
    assert wrong not in str(exc_info.value)
    assert wrong not in str(exc_info.value.fields)
    assert _unverified_state(consumer) == UNVERIFIED


@pytest.mark.django_db
@pytest.mark.parametrize("real_name", ["", "   ", "名" * 51])
def test_missing_or_overlong_real_name_is_refused_and_saves_nothing(consumer, real_name):
    with pytest.raises(ValidationFailed) as exc_info:
        consumer_verify_identity(actor=None, consumer=consumer, real_name=real_name, id_number=make_resident_id(8))

    assert set(exc_info.value.fields) == {"real_name"}
    assert _unverified_state(consumer) == UNVERIFIED


@pytest.mark.django_db
def test_same_id_number_on_a_second_account_is_refused():
    first, second = ConsumerFactory(), ConsumerFactory()
    number = make_resident_id(42)
    consumer_verify_identity(actor=None, consumer=first, real_name="王小明", id_number=number)

    with pytest.raises(ValidationFailed) as exc_info:
        consumer_verify_identity(actor=None, consumer=second, real_name="王小明", id_number=number.lower())

    assert set(exc_info.value.fields) == {"id_number"}
    assert _unverified_state(second) == UNVERIFIED
    assert Consumer.objects.filter(id_number_hash=identity_hash(number)).get() == first
    # The reply does not confirm that the number belongs to someone else.
    message = exc_info.value.fields["id_number"]
    assert message == "This ID number cannot be verified for this account; contact support."
    assert "another account" not in exc_info.value.message and "bound" not in message


@pytest.mark.django_db
def test_failed_attempts_are_limited_per_account_per_day(settings):
    cache.clear()
    settings.CONSUMER_VERIFY_FAILURE_LIMIT = 3
    owner, prober, bystander = ConsumerFactory(), ConsumerFactory(), ConsumerFactory()
    consumer_verify_identity(actor=None, consumer=owner, real_name="王小明", id_number=make_resident_id(50))
    good = make_resident_id(51)
    wrong_check_digit = good[:-1] + ("1" if good[-1] != "1" else "2")
    for number in (make_resident_id(50), wrong_check_digit):  # a taken number, then a mistyped one
        with pytest.raises(ValidationFailed):
            consumer_verify_identity(actor=None, consumer=prober, real_name="王小明", id_number=number)
    with pytest.raises(ValidationFailed):
        consumer_verify_identity(actor=None, consumer=prober, real_name="", id_number=make_resident_id(52))

    # Limit reached: even a good number is refused without being checked.
    with pytest.raises(NotAllowed) as exc_info:
        consumer_verify_identity(actor=None, consumer=prober, real_name="王小明", id_number=make_resident_id(53))
    assert exc_info.value.code == "verify_attempts_exceeded"
    assert _unverified_state(prober) == UNVERIFIED
    # Other accounts are not affected.
    consumer_verify_identity(actor=None, consumer=bystander, real_name="李华", id_number=make_resident_id(54))
    cache.clear()


@pytest.mark.django_db
def test_verifying_an_already_verified_consumer_is_not_allowed_and_changes_nothing(consumer):
    consumer_verify_identity(actor=None, consumer=consumer, real_name="王小明", id_number=make_resident_id(1))
    before = _unverified_state(consumer)

    with pytest.raises(NotAllowed):
        consumer_verify_identity(actor=None, consumer=consumer, real_name="李华", id_number=make_resident_id(2))

    assert _unverified_state(consumer) == before
