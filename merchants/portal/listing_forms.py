"""The listing editor's forms and the pieces they share with the CSV import: rule fields, preview, badge.

A pricing rule is edited as plain form fields (one set per rule kind) rather than JSON: ``rule_json``
turns the fields of the chosen kind into the JSON that :func:`merchants.pricing.parse_rule` reads, and
``rule_errors_to_fields`` puts each of its complaints back next to the field it is about. The CSV import
uses the same column names, so a row of the file and a submitted form are read by the same code.

The bill preview rates a sample usage with :func:`merchants.pricing.rate` — the function that rates real
orders — so the figure a merchant sees while typing is the one a consumer would be charged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django import forms
from django.utils import timezone, translation
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext

from bnpl.money import format_cny

from ..choices import ConfirmMode, Scenario
from ..models import Listing
from ..pricing import (
    BillLineDraft,
    PricingRule,
    PricingRuleError,
    RuleKind,
    Unit,
    UsageItem,
    bill_total,
    describe,
    parse_rule,
    rate,
)

#: Rows of the tier table in the editor (the CSV ``tiers`` column has no limit but the pricing module's).
TIER_ROWS = 5
TIME_UNITS = (Unit.HOUR, Unit.MINUTE)

RULE_KIND_CHOICES = [
    (RuleKind.FIXED.value, gettext_lazy("Fixed price")),
    (RuleKind.PER_UNIT.value, gettext_lazy("Per unit used (hour, kWh, visit …)")),
    (RuleKind.TIERED.value, gettext_lazy("Tiered (cheaper in bulk)")),
    (RuleKind.EXPRESS.value, gettext_lazy("Express parcel (first weight + additional kg)")),
]
UNIT_CHOICES = [
    (Unit.HOUR.value, gettext_lazy("hour")),
    (Unit.MINUTE.value, gettext_lazy("minute")),
    (Unit.KWH.value, gettext_lazy("kWh")),
    (Unit.VISIT.value, gettext_lazy("visit")),
    (Unit.KG.value, gettext_lazy("kg")),
    (Unit.ITEM.value, gettext_lazy("item")),
]

#: The form/CSV fields of each rule kind, and the rule JSON key each one fills.
RULE_FIELDS: dict[str, dict[str, str]] = {
    RuleKind.FIXED: {"price": "price", "fixed_name": "name"},
    RuleKind.PER_UNIT: {
        "unit": "unit",
        "unit_price": "unit_price",
        "free_units": "free_units",
        "minimum_amount": "minimum_amount",
        "cap_per_24h": "cap_per_24h",
        "round_up": "round_up",
    },
    RuleKind.TIERED: {"unit": "unit", "free_units": "free_units"},
    RuleKind.EXPRESS: {
        "first_weight_kg": "first_weight_kg",
        "first_weight_fee": "first_weight_fee",
        "additional_per_kg": "additional_per_kg",
        "packaging_fee": "packaging_fee",
        "insurance_rate": "insurance_rate",
        "insurance_min_fee": "insurance_min_fee",
    },
}
ALL_RULE_FIELDS = sorted({name for fields in RULE_FIELDS.values() for name in fields})
TRUE_WORDS = frozenset({"1", "true", "yes", "y", "on", "是", "√"})


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def rule_json(kind: str, values: Mapping[str, Any], tiers: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """The rule JSON for ``kind`` from form or CSV values (strings); a blank optional field takes its default.

    ``tiers`` are ``(up_to, unit_price)`` pairs in order; a blank ``up_to`` is the open-ended last tier.
    Nothing is validated here: :func:`parse_rule` does that and names every problem.
    """
    data: dict[str, Any] = {"kind": kind}
    for field, key in RULE_FIELDS.get(kind, {}).items():
        value = _text(values.get(field))
        if field == "round_up":
            data[key] = value.lower() in TRUE_WORDS or values.get(field) is True
        elif field == "cap_per_24h":
            data[key] = value or None
        elif value:
            data[key] = value
    if kind == RuleKind.TIERED:
        data["tiers"] = [{"up_to": up_to or None, "unit_price": price} for up_to, price in tiers or []]
    return data


def tiers_from_text(text: str) -> list[tuple[str, str]]:
    """The CSV ``tiers`` column, ``10:1.00;50:0.80;:0.60`` (up to:unit price; blank up to = and above)."""
    pairs = []
    for part in _text(text).split(";"):
        if not part.strip():
            continue
        up_to, _sep, price = part.partition(":")
        pairs.append((up_to.strip(), price.strip()))
    return pairs


def translate_rule_message(message: str) -> str:
    """The pricing module's English messages, translated where the catalogue knows them."""
    # The fixed messages ("This field is required.") are in the catalogue; the rest stay English.
    return _(message)


def rule_errors_to_fields(errors: Mapping[str, str], *, tier_rows: list[int] | None = None) -> dict[str, str]:
    """Service errors (``pricing_rule.unit_price``, ``pricing_rule.tiers[1].up_to``) → form field names.

    ``tier_rows`` maps the index of a tier in the rule to the editor's row it came from (blank rows are
    skipped when the rule is built). Keys that name no field go to ``"__all__"``.
    """
    fields: dict[str, str] = {}
    key_to_field = {key: field for kind_fields in RULE_FIELDS.values() for field, key in kind_fields.items()}
    for key, message in errors.items():
        text = translate_rule_message(message)
        if not key.startswith("pricing_rule"):
            fields[key] = text
            continue
        rest = key.removeprefix("pricing_rule").lstrip(".")
        if rest.startswith("tiers[") and "]" in rest:
            index = int(rest[len("tiers[") : rest.index("]")])
            row = tier_rows[index] if tier_rows and index < len(tier_rows) else index
            part = rest[rest.index("]") + 1 :].lstrip(".") or "up_to"
            name = f"tier_{row}_{part}"
            fields[name] = text
        elif rest == "tiers":
            fields["tier_0_unit_price"] = text
        elif rest == "kind":
            fields["rule_kind"] = text
        elif rest in key_to_field:
            fields[key_to_field[rest]] = text
        else:
            fields["__all__"] = f"{rest}: {text}" if rest else text
    return fields


def _money_field(label: Any, **kwargs: Any) -> forms.CharField:
    attrs = {"inputmode": "decimal", "autocomplete": "off"}
    return forms.CharField(label=label, required=False, max_length=20, widget=forms.TextInput(attrs=attrs), **kwargs)


class ListingForm(forms.Form):
    """A listing and its pricing rule; only the chosen kind's rule fields are read.

    The form checks only the shape of the input; the listing service validates the values (and says
    which is wrong), so the portal, the API and the CSV import accept exactly the same listings.
    """

    title = forms.CharField(label=gettext_lazy("Title"), max_length=120)
    description = forms.CharField(label=gettext_lazy("Description"), required=False, widget=forms.Textarea({"rows": 2}))
    scenario = forms.ChoiceField(label=gettext_lazy("Scenario"), choices=Scenario.choices)
    confirm_mode = forms.ChoiceField(
        label=gettext_lazy("Confirmation mode"), choices=ConfirmMode.choices, initial=ConfirmMode.EACH_TIME
    )
    max_amount = _money_field(
        gettext_lazy("Per-order ceiling (¥)"), help_text=gettext_lazy("The most one order may be charged.")
    )
    min_score = forms.CharField(label=gettext_lazy("Minimum score"), initial="550", max_length=4)
    order_ttl_minutes = forms.CharField(
        label=gettext_lazy("Minutes to confirm an order"), initial="30", max_length=6, required=False
    )
    rule_kind = forms.ChoiceField(label=gettext_lazy("How the price is set"), choices=RULE_KIND_CHOICES)
    # fixed
    price = _money_field(gettext_lazy("Price (¥)"))
    fixed_name = forms.CharField(
        label=gettext_lazy("Bill line name"), required=False, max_length=64, help_text=gettext_lazy("Default: 商品金额")
    )
    # per unit / tiered
    unit = forms.ChoiceField(label=gettext_lazy("Unit"), choices=UNIT_CHOICES, required=False, initial=Unit.HOUR)
    unit_price = _money_field(gettext_lazy("Price per unit (¥)"), help_text=gettext_lazy("Up to 4 decimal places."))
    free_units = _money_field(gettext_lazy("Free units per order"))
    minimum_amount = _money_field(gettext_lazy("Minimum charge per order (¥)"))
    cap_per_24h = _money_field(gettext_lazy("Cap per 24 hours (¥)"), help_text=gettext_lazy("Blank: no cap."))
    round_up = forms.BooleanField(label=gettext_lazy("Bill each started unit in full"), required=False)
    # express
    first_weight_kg = _money_field(gettext_lazy("First weight (kg)"))
    first_weight_fee = _money_field(gettext_lazy("First weight fee (¥)"))
    additional_per_kg = _money_field(gettext_lazy("Each additional kg (¥)"))
    packaging_fee = _money_field(gettext_lazy("Packaging fee (¥)"))
    insurance_rate = _money_field(
        gettext_lazy("Insurance rate"), help_text=gettext_lazy("Share of the declared value, e.g. 0.01 for 1%.")
    )
    insurance_min_fee = _money_field(gettext_lazy("Minimum insurance fee (¥)"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for row in range(TIER_ROWS):
            self.fields[f"tier_{row}_up_to"] = _money_field(gettext_lazy("Up to"))
            self.fields[f"tier_{row}_unit_price"] = _money_field(gettext_lazy("Price per unit (¥)"))

    @property
    def kind(self) -> str:
        """The rule kind being edited (what was submitted, else the initial one)."""
        value = self.data.get("rule_kind") if self.is_bound else None
        value = value or self.initial.get("rule_kind") or RuleKind.PER_UNIT.value
        return value if value in {kind.value for kind in RuleKind} else RuleKind.PER_UNIT.value

    def tier_rows(self) -> list[tuple[Any, Any]]:
        return [(self[f"tier_{row}_up_to"], self[f"tier_{row}_unit_price"]) for row in range(TIER_ROWS)]

    def _tiers(self, values: Mapping[str, Any]) -> tuple[list[tuple[str, str]], list[int]]:
        pairs, rows = [], []
        for row in range(TIER_ROWS):
            up_to, price = _text(values.get(f"tier_{row}_up_to")), _text(values.get(f"tier_{row}_unit_price"))
            if up_to or price:
                pairs.append((up_to, price))
                rows.append(row)
        return pairs, rows

    def raw_rule(self) -> tuple[dict[str, Any], list[int]]:
        """The rule JSON from the submitted data (valid or not), and the tier rows it used."""
        values = self.data if self.is_bound else self.initial
        pairs, rows = self._tiers(values)
        return rule_json(self.kind, values, pairs), rows

    def service_fields(self) -> tuple[dict[str, Any], list[int]]:
        """The keyword arguments of ``listing_create`` / ``listing_update`` (after ``is_valid()``)."""
        data = self.cleaned_data
        rule, rows = self.raw_rule()
        fields = {
            "title": data["title"],
            "description": data.get("description", ""),
            "scenario": data["scenario"],
            "confirm_mode": data["confirm_mode"],
            "max_amount": data.get("max_amount", ""),
            "pricing_rule": rule,
            "min_score": data.get("min_score") or "550",
            "order_ttl_minutes": data.get("order_ttl_minutes") or "30",
        }
        return fields, rows

    def add_service_errors(self, errors: Mapping[str, str], tier_rows: list[int]) -> None:
        for field, message in rule_errors_to_fields(errors, tier_rows=tier_rows).items():
            self.add_error(None if field == "__all__" or field not in self.fields else field, message)


def listing_initial(listing: Listing) -> dict[str, Any]:
    """The editor's initial values for an existing listing (its stored rule spread into fields)."""
    initial: dict[str, Any] = {
        "title": listing.title,
        "description": listing.description,
        "scenario": listing.scenario,
        "confirm_mode": listing.confirm_mode,
        "max_amount": str(listing.max_amount),
        "min_score": str(listing.min_score),
        "order_ttl_minutes": str(listing.order_ttl_minutes),
    }
    try:
        rule = parse_rule(listing.pricing_rule).to_dict()
    except PricingRuleError:
        return initial
    kind = rule["kind"]
    initial["rule_kind"] = kind
    for field, key in RULE_FIELDS[kind].items():
        value = rule.get(key)
        initial[field] = value if isinstance(value, bool) else _text(value)
    for row, tier in enumerate(rule.get("tiers", [])[:TIER_ROWS]):
        initial[f"tier_{row}_up_to"] = _text(tier["up_to"])
        initial[f"tier_{row}_unit_price"] = tier["unit_price"]
    return initial


# --------------------------------------------------------------------------- bill preview


class PreviewForm(forms.Form):
    """A sample usage to rate: a duration for time units, a quantity otherwise, a parcel for express."""

    sample_hours = forms.IntegerField(label=gettext_lazy("Hours"), required=False, min_value=0, max_value=24 * 366)
    sample_minutes = forms.IntegerField(label=gettext_lazy("Minutes"), required=False, min_value=0, max_value=59)
    sample_quantity = forms.DecimalField(
        label=gettext_lazy("Quantity"), required=False, min_value=0, max_digits=12, decimal_places=4
    )
    sample_weight = forms.DecimalField(
        label=gettext_lazy("Parcel weight (kg)"), required=False, min_value=0, max_digits=10, decimal_places=3
    )
    sample_packaging = forms.BooleanField(label=gettext_lazy("Packed by us"), required=False)
    sample_declared_value = forms.DecimalField(
        label=gettext_lazy("Declared value (¥)"), required=False, min_value=0, max_digits=12, decimal_places=2
    )


#: The sample shown before the merchant types one: the issue's "1 h 38 min", a 2.5 kg parcel, 3 units.
DEFAULT_SAMPLE = {
    "sample_hours": 1,
    "sample_minutes": 38,
    "sample_quantity": Decimal(3),
    "sample_weight": Decimal("2.5"),
}

UNIT_WORDS: dict[Unit, Callable[[], str]] = {
    Unit.KWH: lambda: _("kWh"),
    Unit.VISIT: lambda: _("visits"),
    Unit.KG: lambda: _("kg"),
    Unit.ITEM: lambda: _("items"),
    Unit.HOUR: lambda: _("hours"),
    Unit.MINUTE: lambda: _("minutes"),
}


@dataclass(frozen=True)
class BillPreview:
    """A sample bill: the sentence, the lines, the total, and whether the ceiling would refuse it."""

    sentence: str
    lines: list[BillLineDraft]
    total: Decimal
    over_ceiling: bool


def _fmt_quantity(value: Decimal) -> str:
    return format(value.normalize(), "f")


def bill_preview(
    rule: PricingRule, sample: Mapping[str, Any], *, max_amount: Decimal | None = None, now: datetime | None = None
) -> BillPreview:
    """Rate ``sample`` under ``rule`` with the same code that rates orders, and say it in one sentence."""
    started_at = now or timezone.now()
    # The default sample only stands in for no sample at all; a field left blank in a given one is 0.
    given = {key: value for key, value in sample.items() if value not in (None, "")}
    values = given or dict(DEFAULT_SAMPLE)
    properties: dict[str, Any] = {}
    unit = getattr(rule, "unit", None)
    if rule.kind == RuleKind.FIXED:
        quantity, usage_text = Decimal(1), _("One order")
    elif rule.kind == RuleKind.EXPRESS:
        quantity = Decimal(values.get("sample_weight") or 0)
        usage_text = _("A %(weight)s kg parcel") % {"weight": _fmt_quantity(quantity)}
        if sample.get("sample_packaging"):
            properties["packaging"] = True
        declared = sample.get("sample_declared_value")
        if declared not in (None, ""):
            properties["declared_value"] = f"{Decimal(declared):.2f}"
            usage_text += _(" declared at %(value)s") % {"value": format_cny(Decimal(declared))}
    elif unit in TIME_UNITS:
        hours, minutes = int(values.get("sample_hours") or 0), int(values.get("sample_minutes") or 0)
        total_minutes = Decimal(hours * 60 + minutes)
        per = Decimal(60) if unit == Unit.HOUR else Decimal(1)
        quantity = (total_minutes / per).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
        usage_text = _("%(hours)d h %(minutes)d min") % {"hours": hours, "minutes": minutes}
    else:
        quantity = Decimal(values.get("sample_quantity") or 0)
        usage_text = f"{_fmt_quantity(quantity)} {UNIT_WORDS[unit]()}" if unit else _fmt_quantity(quantity)
    lines = rate(rule, [UsageItem(quantity, started_at, properties)], started_at=started_at)
    total = bill_total(lines)
    sentence = _("%(usage)s at %(rule)s → %(total)s") % {
        "usage": usage_text,
        "rule": describe(rule, translation.get_language() or "zh-hans"),
        "total": format_cny(total),
    }
    return BillPreview(sentence, lines, total, max_amount is not None and total > max_amount)


def parse_max_amount(value: object) -> Decimal | None:
    try:
        amount = Decimal(_text(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() and amount > 0 else None


# --------------------------------------------------------------------------- badge


def badge_snippet(*, listing: Listing, url: str) -> SafeString:
    """The embeddable 先享 badge: a self-contained link (inline styles, no script) to the catalogue page.

    Returned as the ``SafeString`` that ``format_html`` built (every value escaped), so templates render
    it without ``|safe``; ``|force_escape`` shows it as code to copy.
    """
    try:
        price = describe(parse_rule(listing.pricing_rule), translation.get_language() or "zh-hans")
    except PricingRuleError:
        price = ""
    style = (
        "display:inline-flex;align-items:center;gap:6px;padding:4px 10px;border-radius:6px;"
        "background:linear-gradient(135deg,#1677ff,#00b3a4);color:#fff;text-decoration:none;"
        "font:600 13px/1.4 -apple-system,PingFang SC,Microsoft YaHei,sans-serif"
    )
    return format_html(
        '<a href="{}" target="_blank" rel="noopener" style="{}">{} <span style="font-weight:400">{}</span></a>',
        url,
        style,
        pgettext("badge", "Pay later"),
        price,
    )
