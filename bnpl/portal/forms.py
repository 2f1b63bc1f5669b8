"""Forms of the consumer pages. They check the shape of input; the services check the rules."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from merchants.choices import Scenario

from ..choices import OrderStatus
from ..disputes import MAX_DESCRIPTION
from ..models.settlement import DisputeReason
from ..money import MoneyError, parse_money
from ..services import MAX_REASON

SEARCH_ATTRS = {
    "type": "search",
    "autocomplete": "off",
    "enterkeyhint": "search",
    # static/js/active-search.js fires the search once typing pauses and IME composition has ended.
    "data-active-search": "",
}


class CatalogueFilterForm(forms.Form):
    """The catalogue's filters (a GET form: a bookmarkable, shareable address)."""

    q = forms.CharField(label=_("Search"), max_length=50, required=False, widget=forms.TextInput(attrs=SEARCH_ATTRS))
    scenario = forms.ChoiceField(
        label=_("Scenario"), required=False, choices=[("", _("All scenarios")), *Scenario.choices]
    )
    city = forms.ChoiceField(label=_("City"), required=False, choices=[("", _("All cities"))])

    def __init__(self, *args, cities: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["city"].choices = [("", _("All cities")), *((c, c) for c in cities)]


class OrderFilterForm(forms.Form):
    """The filters of "my orders": tab, status, scenario and the active search."""

    tab = forms.ChoiceField(
        required=False,
        choices=[("open", "open"), ("upcoming", "upcoming"), ("past", "past"), ("all", "all")],
        widget=forms.HiddenInput,
    )
    q = forms.CharField(label=_("Search"), max_length=50, required=False, widget=forms.TextInput(attrs=SEARCH_ATTRS))
    status = forms.ChoiceField(label=_("Status"), required=False, choices=[("", _("Any status")), *OrderStatus.choices])
    scenario = forms.ChoiceField(
        label=_("Scenario"), required=False, choices=[("", _("All scenarios")), *Scenario.choices]
    )

    def filters(self) -> dict[str, str]:
        """The cleaned filters, with the defaults for anything invalid (a filter never errors)."""
        # An invalid filter is dropped on its own; the valid ones still apply.
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return {
            "tab": data.get("tab") or "all",
            "q": data.get("q") or "",
            "status": data.get("status") or "",
            "scenario": data.get("scenario") or "",
        }


class ConsentForm(forms.Form):
    """The explicit consent of the hosted pages: a box the consumer ticks themselves (never pre-ticked)."""

    consent = forms.BooleanField(
        label=_("I have read the terms above and agree to be charged automatically after the service."),
        required=True,
        error_messages={"required": _("Tick the box to agree before you confirm.")},
    )

    def __init__(self, *args, **kwargs) -> None:
        kwargs.pop("initial", None)  # consent is never pre-filled, whatever a caller passes
        super().__init__(*args, **kwargs)


class AgreementConsentForm(ConsentForm):
    consent = forms.BooleanField(
        label=_(
            "I have read the terms above and authorise this merchant to place orders that are charged "
            "automatically after each service, until I revoke it."
        ),
        required=True,
        error_messages={"required": _("Tick the box to agree before you confirm.")},
    )


class CancelOrderForm(forms.Form):
    """Cancel an order with a reason (kept on the order's timeline)."""

    REASONS = [
        ("changed_mind", _("I changed my mind")),
        ("ordered_by_mistake", _("I ordered by mistake")),
        ("service_not_started", _("The service did not start")),
        ("other", _("Another reason")),
    ]
    reason = forms.ChoiceField(label=_("Why do you cancel?"), choices=REASONS)
    details = forms.CharField(
        label=_("Details (optional)"), max_length=MAX_REASON - 40, required=False, widget=forms.TextInput
    )

    def reason_text(self) -> str:
        label = str(dict(self.REASONS)[self.cleaned_data["reason"]])
        details = (self.cleaned_data.get("details") or "").strip()
        return f"{label}: {details}" if details else label


class FundingSourceForm(forms.Form):
    """Add a sandbox card or wallet with a starting balance (test mode: no real money moves)."""

    label = forms.CharField(
        label=_("Name"),
        max_length=64,
        help_text=_("For example 招商银行储蓄卡(1234)."),
    )
    balance_amount = forms.CharField(
        label=_("Sandbox balance (¥)"), max_length=16, widget=forms.TextInput(attrs={"inputmode": "decimal"})
    )
    is_default = forms.BooleanField(label=_("Charge this one by default"), required=False)

    def clean_balance_amount(self) -> str:
        value = self.cleaned_data["balance_amount"]
        try:
            parse_money(value)
        except MoneyError:
            raise forms.ValidationError(
                _("Enter an amount in yuan, not negative, with at most two decimal places."), code="invalid_amount"
            ) from None
        return value


# What a consumer can report as a problem before the charge (a dispute of the whole bill, bnpl/portal/order_actions.py).
PROBLEM_REASONS = (DisputeReason.NOT_RECEIVED, DisputeReason.FAULTY, DisputeReason.WRONG_AMOUNT)


class ProblemReportForm(forms.Form):
    """Report a problem with an unpaid order: what went wrong and what happened (the charge waits meanwhile)."""

    reason = forms.ChoiceField(
        label=_("What went wrong?"),
        choices=[("", "---------"), *((r.value, r.label) for r in PROBLEM_REASONS)],
        error_messages={"required": _("Choose what went wrong."), "invalid_choice": _("Choose what went wrong.")},
    )
    description = forms.CharField(
        label=_("What happened?"),
        max_length=MAX_DESCRIPTION,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("The merchant and our team read this. Dates, parcel numbers and amounts help."),
        error_messages={"required": _("Tell us what happened.")},
    )


class DisputeForm(forms.Form):
    """Open a dispute with a reason, a description and, optionally, the part of the amount disputed."""

    reason = forms.ChoiceField(
        label=_("Reason"),
        choices=[("", "---------"), *DisputeReason.choices],
        error_messages={"required": _("Choose a reason."), "invalid_choice": _("Choose a reason.")},
    )
    description = forms.CharField(
        label=_("Description"),
        max_length=MAX_DESCRIPTION,
        widget=forms.Textarea(attrs={"rows": 4}),
        error_messages={"required": _("Describe the problem.")},
    )
    amount = forms.CharField(
        label=_("Amount disputed (¥, optional)"),
        max_length=16,
        required=False,
        widget=forms.TextInput(attrs={"inputmode": "decimal"}),
        help_text=_("Leave empty to dispute the whole amount."),
    )

    def clean_amount(self) -> str:
        value = (self.cleaned_data.get("amount") or "").strip()
        if value:
            try:
                parse_money(value)
            except MoneyError:
                raise forms.ValidationError(
                    _("Enter an amount in yuan, with at most two decimal places."), code="invalid_amount"
                ) from None
        return value
