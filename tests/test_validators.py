"""Tests for bnpl.validators: USCC, resident ID and mobile validation, normalisation and masking."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from stdnum.cn import ric, uscc

from bnpl.validators import (
    mask_account_number,
    mask_phone,
    mask_resident_id,
    normalize_cn_mobile,
    normalize_resident_id,
    normalize_uscc,
    validate_cn_mobile,
    validate_resident_id,
    validate_uscc,
)
from tests.factories import make_uscc


def make_resident_id(n: int, birth: str = "19900101") -> str:
    """A valid resident ID (Hangzhou Xihu district prefix).

    Local on purpose: ``tests.factories.make_resident_id`` hands stdnum the 17-digit body, but
    ``ric.calc_check_digit`` expects a number with its check digit and ignores the last character.
    """
    body = f"330106{birth}{n % 1000:03d}"
    return body + ric.calc_check_digit(body + "0")


def wrong_last_character(value: str, alphabet: str) -> str:
    return value[:-1] + next(character for character in alphabet if character != value[-1])


# --------------------------------------------------------------------------- USCC

# A known-good code written out literally, so the tests do not only check make_uscc against itself.
PUBLISHED_USCC = "91110000802100433B"


@pytest.mark.parametrize("value", [PUBLISHED_USCC, make_uscc(1), make_uscc(1234567)])
def test_validate_uscc_accepts_codes_with_a_correct_check_character(value):
    validate_uscc(value)


@pytest.mark.parametrize(
    "value",
    [
        wrong_last_character(PUBLISHED_USCC, "0123456789ABCDEFGHJKLMNPQRTUWXY"),
        wrong_last_character(make_uscc(1), "0123456789ABCDEFGHJKLMNPQRTUWXY"),
        make_uscc(1)[:17],
        make_uscc(1) + "0",
        "",
        "91330106MA00000O1X",  # the letter O is not in the USCC alphabet
    ],
)
def test_validate_uscc_refuses_a_wrong_check_character_length_or_alphabet(value):
    with pytest.raises(ValidationError) as caught:
        validate_uscc(value)

    assert caught.value.code == "invalid_uscc"


def test_normalize_uscc_removes_separators_and_upper_cases():
    body = "91330106MA0000001"
    code = body + uscc.calc_check_digit(body)

    assert normalize_uscc(f" {code[:6]}-{code[6:]} ".lower()) == code
    validate_uscc(normalize_uscc(code.lower()))


# --------------------------------------------------------------------------- resident ID


def test_validate_resident_id_accepts_a_correct_check_digit_including_x():
    with_x = next(number for n in range(1000) if (number := make_resident_id(n)).endswith("X"))

    validate_resident_id(make_resident_id(7))
    validate_resident_id(with_x)
    validate_resident_id(with_x.lower())
    assert normalize_resident_id(with_x.lower()) == with_x


@pytest.mark.parametrize(
    "value",
    [
        wrong_last_character(make_resident_id(7), "0123456789X"),
        "330106199013011234",  # month 13
        make_resident_id(7)[:17],
        "",
    ],
)
def test_validate_resident_id_refuses_a_wrong_check_digit_birth_date_or_length(value):
    with pytest.raises(ValidationError) as caught:
        validate_resident_id(value)

    assert caught.value.code == "invalid_resident_id"


# --------------------------------------------------------------------------- mobile


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("13812341234", "13812341234"),
        ("+8613812341234", "13812341234"),
        ("+86 138-1234-1234", "13812341234"),
        ("8613812341234", "13812341234"),
        ("(138) 1234 1234", "13812341234"),
        ("19912341234", "19912341234"),
    ],
)
def test_mobile_numbers_are_normalised_and_accepted(raw, normalised):
    assert normalize_cn_mobile(raw) == normalised
    validate_cn_mobile(raw)


@pytest.mark.parametrize(
    "value", ["12812341234", "1381234123", "138123412345", "+85213812341234", "0571-88881234", "", "1381234123a"]
)
def test_invalid_mobile_numbers_are_refused(value):
    with pytest.raises(ValidationError) as caught:
        validate_cn_mobile(value)

    assert caught.value.code == "invalid_phone"


def test_a_short_number_with_86_in_front_is_not_mistaken_for_a_prefix():
    # Only a 13-digit "86…" is a country prefix; an 11-digit number starting with 86 is left alone.
    assert normalize_cn_mobile("86123456789") == "86123456789"


# --------------------------------------------------------------------------- masking


@pytest.mark.parametrize(
    ("raw", "masked"),
    [("13812341234", "138****1234"), ("+86 138-1234-1234", "138****1234"), ("12345", "*****"), ("", "")],
)
def test_mask_phone_keeps_the_first_three_and_last_four_digits(raw, masked):
    assert mask_phone(raw) == masked


@pytest.mark.parametrize(
    ("raw", "masked"),
    [("330106199001011234", "3301**********1234"), ("33010619900101123x", "3301**********123X")],
)
def test_mask_resident_id_keeps_the_region_prefix_and_last_four(raw, masked):
    assert mask_resident_id(raw) == masked


@pytest.mark.parametrize(
    ("raw", "masked"),
    [("6225880123456789", "**** **** 6789"), ("6225 8801 2345 6789", "**** **** 6789"), ("123", "****")],
)
def test_mask_account_number_shows_only_the_last_four_digits(raw, masked):
    assert mask_account_number(raw) == masked
