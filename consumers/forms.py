"""Forms of the consumers app: they check the shape of input, the services check the rules.

A form never saves: the view (or admin action) binds it, calls one service with
``cleaned_data``, and turns a :class:`~bnpl.exceptions.DomainError` back into form
errors with :func:`add_domain_error`.
"""

from __future__ import annotations

from django import forms
from django.contrib.auth import authenticate
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from bnpl.exceptions import DomainError
from bnpl.money import MoneyError, parse_money
from bnpl.validators import normalize_cn_mobile

from .models import Consumer
from .services import PAUSE_REASON_MAX_LENGTH, REAL_NAME_MAX_LENGTH


def add_domain_error(form: forms.Form, exc: DomainError) -> None:
    """Show a service's refusal on ``form``: each named field on that field, the rest on the form."""
    placed = False
    for field, message in exc.fields.items():
        if field in form.fields:
            form.add_error(field, message)
            placed = True
    if not placed:
        form.add_error(None, exc.message)


class PhoneLoginForm(forms.Form):
    """Consumer log-in by mobile number and password.

    Like Django's ``AuthenticationForm`` it authenticates in ``clean`` and passes the request to
    ``authenticate`` (django-axes counts failed attempts per phone and address from it). The phone
    finds the consumer's login (the username is the phone unless staff registered another); an unknown
    phone is still sent through ``authenticate`` under the phone itself, so it fails and is counted the
    same way and the answer does not tell whether the number is registered.
    """

    phone = forms.CharField(
        label=_("Mobile number"),
        max_length=20,
        widget=forms.TextInput(attrs={"autocomplete": "tel", "inputmode": "tel"}),
    )
    password = forms.CharField(
        label=_("Password"), strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )

    error_messages = {"invalid_login": _("The mobile number or the password is wrong.")}

    def __init__(self, request: HttpRequest | None = None, *args, **kwargs) -> None:
        self.request = request
        self.user_cache = None
        super().__init__(*args, **kwargs)

    def clean(self) -> dict:
        cleaned = super().clean()
        phone, password = cleaned.get("phone"), cleaned.get("password")
        if phone and password:
            normalized = normalize_cn_mobile(phone)
            username = Consumer.objects.filter(phone=normalized).values_list("user__username", flat=True).first()
            user = authenticate(self.request, username=username or normalized, password=password)
            # A login that is not a consumer's (staff, merchant members) cannot sign in here.
            if user is None or username is None or not user.is_active:
                raise forms.ValidationError(self.error_messages["invalid_login"], code="invalid_login")
            self.user_cache = user
        return cleaned

    def get_user(self):
        return self.user_cache


class ConsumerRegistrationForm(forms.Form):
    """Sign-up: a mobile number and a password (the services validate both for real)."""

    phone = forms.CharField(
        label=_("Mobile number"),
        max_length=20,
        widget=forms.TextInput(attrs={"autocomplete": "tel", "inputmode": "tel"}),
    )
    password = forms.CharField(
        label=_("Password"), strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )
    password_confirm = forms.CharField(
        label=_("Password again"), strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )
    city = forms.CharField(label=_("City"), max_length=50, required=False)

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("password") and cleaned.get("password") != cleaned.get("password_confirm"):
            self.add_error("password_confirm", _("The two passwords differ."))
        return cleaned


class NoEchoTextInput(forms.TextInput):
    """A text input that never renders its value back (like ``PasswordInput(render_value=False)``),
    so a refused submission does not put a clear resident ID number into the page again."""

    def get_context(self, name, value, attrs):
        return super().get_context(name, None, attrs)


class IdentityVerificationForm(forms.Form):
    """实名认证: real name and resident ID number. The number is never echoed back into the page."""

    real_name = forms.CharField(label=_("Real name"), max_length=REAL_NAME_MAX_LENGTH)
    id_number = forms.CharField(
        label=_("Resident ID number"),
        max_length=32,
        widget=NoEchoTextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )


class CreditLimitAdjustForm(forms.Form):
    """A staff limit adjustment: the new limit in yuan and the written reason (required)."""

    amount = forms.CharField(
        label=_("New credit limit (¥)"), max_length=16, help_text=_("In yuan, e.g. 1500 or 1500.50.")
    )
    reason = forms.CharField(
        label=_("Reason"),
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Why the limit changes; kept in the limit history."),
    )

    def clean_amount(self):
        try:
            return parse_money(self.cleaned_data["amount"])
        except MoneyError:
            raise forms.ValidationError(
                _("Enter an amount in yuan, not negative, with at most two decimal places."), code="invalid_amount"
            ) from None


class ProfileReasonForm(forms.Form):
    """A reason for a pause or an unpause of a consumer's pay-later."""

    reason = forms.CharField(
        label=_("Reason"), max_length=PAUSE_REASON_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 2})
    )


class SpendCapForm(forms.Form):
    """The consumer's own ceiling on what open orders may hold; empty removes it."""

    amount = forms.CharField(
        label=_("Personal spend cap (¥)"),
        max_length=16,
        required=False,
        help_text=_("Leave empty to use your whole limit. It can never be above your limit."),
        widget=forms.TextInput(attrs={"inputmode": "decimal"}),
    )
