"""Consumer forms: shape checks only; the services hold the rules."""

from __future__ import annotations

from decimal import Decimal

from bnpl.exceptions import ValidationFailed
from consumers.forms import (
    ConsumerRegistrationForm,
    CreditLimitAdjustForm,
    IdentityVerificationForm,
    add_domain_error,
)


def test_identity_form_never_renders_the_id_number_back():
    form = IdentityVerificationForm(data={"real_name": "王小明", "id_number": "330106199001010011"})

    assert form.is_valid()
    assert "330106199001010011" not in str(form)
    assert "王小明" in str(form)


def test_registration_form_requires_matching_passwords():
    form = ConsumerRegistrationForm(
        data={"phone": "13800138000", "password": "Abc-12345", "password_confirm": "Abc-12346"}
    )

    assert not form.is_valid()
    assert list(form.errors) == ["password_confirm"]


def test_limit_form_parses_the_amount_strictly():
    good = CreditLimitAdjustForm(data={"amount": "1500.5", "reason": "ok"})
    assert good.is_valid()
    assert good.cleaned_data["amount"] == Decimal("1500.50")
    bad = CreditLimitAdjustForm(data={"amount": "1500.505", "reason": "ok"})
    assert not bad.is_valid()
    assert list(bad.errors) == ["amount"]


def test_add_domain_error_puts_known_fields_on_the_field_and_the_rest_on_the_form():
    on_field = CreditLimitAdjustForm(data={"amount": "1", "reason": "r"})
    on_field.is_valid()
    add_domain_error(on_field, ValidationFailed("bad", fields={"amount": "too low"}))
    assert on_field.errors["amount"] == ["too low"]

    on_form = CreditLimitAdjustForm(data={"amount": "1", "reason": "r"})
    on_form.is_valid()
    add_domain_error(on_form, ValidationFailed("refused", fields={"score": "x"}))
    assert on_form.non_field_errors() == ["refused"]
