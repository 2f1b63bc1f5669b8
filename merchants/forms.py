"""Forms of the merchants app.

Forms only collect and show input: they never save. Their ``clean()`` calls the same checks the
services run (``merchant_application_clean``, ``member_change_role_check`` ...) so a person sees
every problem next to its field before anything is written; the view or admin then calls the
service, which checks again under the row lock and does the write.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from bnpl.exceptions import DomainError

from .choices import EXCLUDED_CATEGORIES, MerchantCategory
from .models import Merchant, MerchantMember
from .services import (
    APPLICATION_FIELDS,
    REASON_MAX_LENGTH,
    fee_rate_clean,
    member_change_role_check,
    merchant_application_clean,
)

#: What an applicant may choose: excluded categories are not offered at all (the service refuses them anyway).
APPLICABLE_CATEGORY_CHOICES = [
    (value, label) for value, label in MerchantCategory.choices if value not in EXCLUDED_CATEGORIES
]


def add_domain_errors(form: forms.BaseForm, exc: DomainError) -> None:
    """Show a service's refusal on a form: each field's message next to it, the rest on top.

    Keys like ``pricing_rule.tiers[0].up_to`` belong to the form field before the dot; the full
    key is kept in the message so the person knows which part of the value is wrong.
    """
    if not exc.fields:
        form.add_error(None, exc.message)
        return
    for key, message in exc.fields.items():
        field = key.split(".", 1)[0]
        if field in form.fields:
            form.add_error(field, message if field == key else f"{key.split('.', 1)[1]}: {message}")
        else:
            form.add_error(None, message)


class ReasonForm(forms.Form):
    """The reason staff give for rejecting, suspending or reinstating a merchant (shown to the merchant)."""

    reason = forms.CharField(
        label=_("Reason"),
        max_length=REASON_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        error_messages={"required": _("Give a reason.")},
    )


class MerchantApplicationForm(forms.ModelForm):
    """The KYB application: legal entity, contact, business categories and settlement account."""

    # Wider than the columns: people type "+86 138-0013-8000" or a USCC with spaces, and the
    # service normalises them to the stored form.
    uscc = forms.CharField(label=_("USCC"), max_length=40)
    contact_phone = forms.CharField(label=_("Contact phone"), max_length=20)
    settlement_account_number = forms.CharField(label=_("Account number"), max_length=50)
    categories = forms.MultipleChoiceField(
        label=_("Business categories"), choices=APPLICABLE_CATEGORY_CHOICES, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = Merchant
        fields = APPLICATION_FIELDS

    def clean(self) -> dict[str, Any]:
        cleaned_data = super().clean()
        data = {name: cleaned_data[name] for name in APPLICATION_FIELDS if name in self.fields and name in cleaned_data}
        try:
            normalised = merchant_application_clean(
                data=data, merchant=self.instance if self.instance.pk else None, partial=True
            )
        except DomainError as exc:
            add_domain_errors(self, exc)
        else:
            cleaned_data.update(normalised)
        return cleaned_data


class MerchantAdminForm(MerchantApplicationForm):
    """The application as platform staff see it, plus the fee rate (never the status)."""

    class Meta(MerchantApplicationForm.Meta):
        fields = (*APPLICATION_FIELDS, "fee_rate")

    def clean_fee_rate(self) -> Any:
        value = self.cleaned_data.get("fee_rate")
        if value is None:
            return value
        try:
            return fee_rate_clean(value)
        except DomainError as exc:
            raise forms.ValidationError(exc.fields.get("fee_rate", exc.message)) from exc


class MerchantMemberAdminForm(forms.ModelForm):
    """Add a member, or change a member's role (the last owner cannot be demoted)."""

    class Meta:
        model = MerchantMember
        fields = ("merchant", "user", "role")

    def clean(self) -> dict[str, Any]:
        cleaned_data = super().clean()
        role = cleaned_data.get("role")
        # ``self.instance`` still holds the stored role here: the form copies its values onto it later.
        if self.instance.pk and role:
            try:
                member_change_role_check(member=self.instance, role=role)
            except DomainError as exc:
                self.add_error("role", exc.message)
        return cleaned_data
