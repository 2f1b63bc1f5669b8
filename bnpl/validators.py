"""Validators for Chinese identifiers and masking helpers.

A dependency-free leaf like :mod:`bnpl.money`: the lower apps (``merchants``,
``consumers``) use it too. Check characters are computed by python-stdnum rather
than by hand, because getting the USCC's base-31 check character or the resident
ID's ISO 7064 check digit slightly wrong is easy and silent.
"""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _
from stdnum.cn import ric, uscc
from stdnum.exceptions import ValidationError as StdnumError

CN_MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")


def normalize_cn_mobile(value: str) -> str:
    """Strip spaces, dashes and a +86/86 prefix: ``+86 138-0013-8000`` → ``13800138000``."""
    digits = re.sub(r"[\s\-()]", "", str(value or ""))
    if digits.startswith("+86"):
        digits = digits[3:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    return digits


def validate_cn_mobile(value: str) -> None:
    if not CN_MOBILE_RE.match(normalize_cn_mobile(value)):
        raise ValidationError(
            _("Enter a valid mainland China mobile number (11 digits starting with 1)."),
            code="invalid_phone",
            params={"value": value},
        )


def normalize_uscc(value: str) -> str:
    return uscc.compact(str(value or ""))


def validate_uscc(value: str) -> None:
    try:
        uscc.validate(str(value or ""))
    except StdnumError as exc:
        raise ValidationError(
            _("Enter a valid unified social credit code (18 characters with a correct check character)."),
            code="invalid_uscc",
            params={"value": value},
        ) from exc


def normalize_resident_id(value: str) -> str:
    """Upper-case, without the spaces and dashes people type between the groups."""
    return re.sub(r"[\s\-]", "", str(value or "")).upper()


def validate_resident_id(value: str) -> None:
    try:
        ric.validate(normalize_resident_id(value))
    except StdnumError as exc:
        raise ValidationError(
            _("Enter a valid resident ID number (18 characters with a correct check digit)."),
            code="invalid_resident_id",
        ) from exc


def mask_phone(value: str) -> str:
    """``13812341234`` → ``138****1234``."""
    value = normalize_cn_mobile(value)
    if len(value) < 7:
        return "*" * len(value)
    return f"{value[:3]}****{value[-4:]}"


def mask_email(value: str) -> str:
    """``cashier@example.com`` → ``c***@example.com`` (first character of the name, the domain in full)."""
    name, at, domain = str(value or "").strip().rpartition("@")
    if not at:
        return "***"
    return f"{name[:1]}***@{domain}"


def mask_resident_id(value: str) -> str:
    """``330106199001011234`` → ``3301**********1234`` (region prefix and last four only)."""
    value = normalize_resident_id(value)
    return f"{value[:4]}{'*' * (len(value) - 8)}{value[-4:]}"


def mask_account_number(value: str) -> str:
    """A bank account shown as ``**** **** 1234``."""
    digits = re.sub(r"\s", "", str(value or ""))
    return f"**** **** {digits[-4:]}" if len(digits) >= 4 else "****"
