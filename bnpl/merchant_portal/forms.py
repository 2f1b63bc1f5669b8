"""Forms of the merchant portal's order pages: the list's filters and each order action's input."""

from __future__ import annotations

import secrets
from decimal import Decimal
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from bnpl.choices import OrderStatus
from bnpl.money import to_money
from merchants.choices import Scenario
from merchants.models import Merchant

from .selectors import DEFAULT_SORT, DPD_BUCKETS, OrderFilters

SORT_CHOICES = [
    ("-created", _("Newest first")),
    ("created", _("Oldest first")),
    ("-amount", _("Largest amount first")),
    ("amount", _("Smallest amount first")),
]
LINE_ROWS = 5
DISCOUNT_ROWS = 2


class OrderFilterForm(forms.Form):
    """The list's filters, read from the query string; invalid values are ignored, never an error page."""

    q = forms.CharField(
        label=_("Search"),
        required=False,
        max_length=64,
        widget=forms.TextInput(attrs={"placeholder": _("Order no. or last 4 digits of the phone"), "type": "search"}),
    )
    status = forms.MultipleChoiceField(label=_("Status"), choices=OrderStatus.choices, required=False)
    scenario = forms.ChoiceField(
        label=_("Scenario"), choices=[("", _("All scenarios")), *Scenario.choices], required=False
    )
    listing = forms.TypedChoiceField(label=_("Listing"), coerce=int, required=False, empty_value=None)
    created_from = forms.DateField(
        label=_("Created from"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    created_to = forms.DateField(label=_("Created to"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    amount_min = forms.DecimalField(
        label=_("Amount from"), required=False, min_value=0, max_digits=12, decimal_places=2
    )
    amount_max = forms.DecimalField(label=_("Amount to"), required=False, min_value=0, max_digits=12, decimal_places=2)
    dpd = forms.ChoiceField(
        label=_("Overdue bucket"), required=False, choices=[("", _("Any")), *[(b, b) for b in DPD_BUCKETS]]
    )
    guaranteed = forms.BooleanField(label=_("Guaranteed by the platform"), required=False)
    refunded = forms.BooleanField(label=_("Refunded"), required=False)
    disputed = forms.BooleanField(label=_("Disputed"), required=False)
    sort = forms.ChoiceField(label=_("Sort"), choices=SORT_CHOICES, required=False)

    def __init__(self, *args: Any, merchant: Merchant, listings: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["listing"].choices = [("", _("All listings")), *listings]

    def filters(self) -> OrderFilters:
        """The valid part of the input (a bad field is dropped rather than failing the whole list)."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return OrderFilters(
            statuses=list(data.get("status") or []),
            scenario=data.get("scenario") or "",
            listing_id=data.get("listing"),
            created_from=data.get("created_from"),
            created_to=data.get("created_to"),
            amount_min=data.get("amount_min"),
            amount_max=data.get("amount_max"),
            q=data.get("q") or "",
            dpd_bucket=data.get("dpd") or "",
            guaranteed=bool(data.get("guaranteed")),
            refunded=bool(data.get("refunded")),
            disputed=bool(data.get("disputed")),
            sort=data.get("sort") or DEFAULT_SORT,
        )


class ReasonForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), max_length=200, widget=forms.TextInput(attrs={"autocomplete": "off"}))


class EmptyForm(forms.Form):
    pass


class LowerAmountForm(ReasonForm):
    amount = forms.DecimalField(label=_("New amount (¥)"), min_value=0, max_digits=12, decimal_places=2)
    field_order = ["amount", "reason"]


class RefundForm(ReasonForm):
    amount = forms.DecimalField(
        label=_("Refund amount (¥)"), min_value=Decimal("0.01"), max_digits=12, decimal_places=2
    )
    # One key per rendered form: a double submit returns the first refund instead of refunding twice.
    refund_key = forms.CharField(widget=forms.HiddenInput, max_length=64)
    field_order = ["amount", "reason"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["refund_key"].initial = f"portal-{secrets.token_hex(12)}"


class CompleteForm(forms.Form):
    """The final bill: either the reported usage rated by the order's rule, or lines typed here."""

    USAGE, LINES = "usage", "lines"
    mode = forms.ChoiceField(
        label=_("Bill"),
        choices=[(USAGE, _("Rate the reported usage")), (LINES, _("Enter the bill lines"))],
        widget=forms.RadioSelect,
        initial=LINES,
    )
    reason = forms.CharField(label=_("Note"), max_length=200, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for i in range(LINE_ROWS):
            self.fields[f"line{i}_name"] = forms.CharField(label=_("Item"), max_length=64, required=False)
            self.fields[f"line{i}_quantity"] = forms.DecimalField(
                label=_("Quantity"), min_value=0, max_digits=14, decimal_places=4, required=False
            )
            self.fields[f"line{i}_unit"] = forms.CharField(label=_("Unit"), max_length=16, required=False)
            self.fields[f"line{i}_unit_price"] = forms.DecimalField(
                label=_("Unit price (¥)"), min_value=0, max_digits=12, decimal_places=4, required=False
            )
        for i in range(DISCOUNT_ROWS):
            self.fields[f"discount{i}_name"] = forms.CharField(label=_("Discount"), max_length=64, required=False)
            self.fields[f"discount{i}_amount"] = forms.DecimalField(
                label=_("Amount (¥)"), min_value=Decimal("0.01"), max_digits=12, decimal_places=2, required=False
            )

    def line_rows(self) -> list[list[forms.BoundField]]:
        return [
            [self[f"line{i}_{key}"] for key in ("name", "quantity", "unit", "unit_price")] for i in range(LINE_ROWS)
        ]

    def discount_rows(self) -> list[list[forms.BoundField]]:
        return [[self[f"discount{i}_{key}"] for key in ("name", "amount")] for i in range(DISCOUNT_ROWS)]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        lines, discounts = [], []
        for i in range(LINE_ROWS):
            name, qty, unit, price = (data.get(f"line{i}_{k}") for k in ("name", "quantity", "unit", "unit_price"))
            if not name and qty is None and price is None:
                continue
            if not name:
                self.add_error(f"line{i}_name", _("Name the item."))
            if price is None:
                self.add_error(f"line{i}_unit_price", _("Enter the unit price."))
            if name and price is not None:
                qty = Decimal(1) if qty is None else qty
                lines.append(
                    {
                        "name": name,
                        "quantity": qty,
                        "unit": unit or "",
                        "unit_price": price,
                        "amount": to_money(qty * price),
                    }
                )
        for i in range(DISCOUNT_ROWS):
            name, amount = data.get(f"discount{i}_name"), data.get(f"discount{i}_amount")
            if not name and amount is None:
                continue
            if not name or amount is None:
                self.add_error(
                    f"discount{i}_name" if not name else f"discount{i}_amount", _("Give both a name and an amount.")
                )
                continue
            discounts.append({"name": name, "amount": amount})
        if data.get("mode") == self.LINES and not lines and not self.errors:
            raise forms.ValidationError(_("Enter at least one bill line, or rate the reported usage."))
        data["lines"] = lines if data.get("mode") == self.LINES else None
        data["discounts"] = discounts
        return data
