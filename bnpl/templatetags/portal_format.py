"""Template filters of the consumer pages: money, Beijing time, masking, pricing rules and decline reasons.

Every amount on a page goes through ``cny`` (``bnpl.money.format_cny``: ¥1,234.50), every time
through ``bjtime`` (Asia/Shanghai, ``YYYY-MM-DD HH:mm``) and every phone number through ``phone``,
so the conventions hold on every page without each template remembering them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from django import forms, template
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from bnpl.money import format_cny
from bnpl.validators import mask_phone
from consumers.choices import ScoreBand
from merchants.pricing import _ZH_UNIT, PricingRuleError, Unit, _en_unit, describe, parse_rule
from scoring.features import SCORE_REASON_TEXTS, ReasonText
from scoring.reasons import POLICY_REASON_TEXTS

register = template.Library()

BEIJING = ZoneInfo("Asia/Shanghai")


def is_chinese() -> bool:
    return (translation.get_language() or "").lower().startswith("zh")


@register.filter
def cny(value: Any) -> str:
    """``Decimal("1234.5")`` → ``¥1,234.50``; an empty value → ``—``."""
    if value is None or value == "":
        return "—"
    try:
        return format_cny(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return "—"


@register.filter
def bjtime(value: datetime | None) -> str:
    """A moment in Beijing time, ``YYYY-MM-DD HH:mm``."""
    if not isinstance(value, datetime):
        return "—"
    if timezone.is_naive(value):
        value = timezone.make_aware(value, BEIJING)
    return value.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")


@register.filter
def bjdate(value: datetime | None) -> str:
    """A day in Beijing time, ``YYYY-MM-DD``."""
    if not isinstance(value, datetime):
        return "—"
    return value.astimezone(BEIJING).strftime("%Y-%m-%d")


@register.filter
def phone(value: str | None) -> str:
    """A mobile number masked as ``138****1234``."""
    return mask_phone(value) if value else "—"


@register.filter
def rule_text(rule: Any) -> str:
    """A pricing rule (a listing's or an order's snapshot) in plain words, in the active language."""
    try:
        return describe(parse_rule(rule), translation.get_language() or "zh-hans")
    except PricingRuleError:
        return _("Price set by the merchant")


@register.filter
def due_delay_text(delay: timedelta | None) -> str:
    """When the charge happens, from a scenario's due delay: right after the service, or N days after."""
    if delay is None or delay <= timedelta(0):
        return _("Charged right after the service ends, for what you used.")
    days = delay.days
    return ngettext(
        "Charged %(days)d day after the order is completed (after you receive the goods).",
        "Charged %(days)d days after the order is completed (after you receive the goods).",
        days,
    ) % {"days": days}


def _reason_text(code: str) -> ReasonText | None:
    return POLICY_REASON_TEXTS.get(code) or SCORE_REASON_TEXTS.get(code)


@register.filter
def reason_message(reason: dict[str, Any]) -> str:
    """A decline reason's sentence in the active language.

    The stored sentence was rendered in the language of the request that was assessed, so the
    text is looked up again by its stable code; the stored one is the fallback for an unknown code.
    """
    text = _reason_text(str(reason.get("code", "")))
    if text is not None:
        return text.message_zh if is_chinese() else str(text.message)
    if is_chinese() and reason.get("message_zh"):
        return str(reason["message_zh"])
    return str(reason.get("message") or reason.get("code") or "")


@register.filter
def reason_hint(reason: dict[str, Any]) -> str:
    """What would change a decline reason, in the active language ("" when there is none)."""
    text = _reason_text(str(reason.get("code", "")))
    if text is not None:
        return text.hint_zh if is_chinese() else str(text.hint)
    if is_chinese() and reason.get("hint_zh"):
        return str(reason["hint_zh"])
    return str(reason.get("hint") or "")


STATUS_CSS = {
    "created": "secondary",
    "pending_confirmation": "secondary",
    "declined": "dark",
    "active": "primary",
    "expired": "secondary",
    "cancelled": "secondary",
    "completed": "info",
    "collecting": "warning",
    "overdue": "danger",
    "paid": "success",
    "partially_refunded": "success",
    "refunded": "success",
    "written_off": "dark",
}


@register.filter
def status_css(status: str) -> str:
    """The Bootstrap colour of an order status badge."""
    return STATUS_CSS.get(str(status), "secondary")


@register.filter
def bs(field: Any) -> str:
    """Render a bound form field's widget with Bootstrap's class (and ``is-invalid`` when it has errors)."""
    widget = field.field.widget
    if isinstance(widget, forms.CheckboxInput):
        css = "form-check-input"
    elif isinstance(widget, forms.Select):
        css = "form-select"
    else:
        css = "form-control"
    if field.errors:
        css += " is-invalid"
    attrs = {"class": css}
    if field.errors:
        attrs["aria-invalid"] = "true"
    return field.as_widget(attrs=attrs)


@register.filter
def band_label(band: str) -> str:
    """A score band's name (较差 … 极好) in the active language."""
    try:
        return str(ScoreBand(band).label)
    except ValueError:
        return ""


@register.filter
def unit_price(value: Decimal | None) -> str:
    """A bill line's unit price: ``¥1.00``, or all four places when it needs them (``¥0.0167``)."""
    if value is None:
        return "—"
    if value == value.quantize(Decimal("0.01")):
        return format_cny(value)
    return f"¥{value.normalize():f}"


@register.filter
def quantity_unit(line: Any) -> str:
    """A bill line's quantity with its unit in the active language (``3 小时``, ``3 hours``)."""
    quantity = line.quantity.normalize() if isinstance(line.quantity, Decimal) else line.quantity
    text = f"{quantity:f}" if isinstance(quantity, Decimal) else str(quantity)
    try:
        unit = Unit(line.unit)
    except ValueError:
        return f"{text} {line.unit}".strip()
    # The pricing module's own unit names, so the bill reads like the price it was rated under.
    label = _ZH_UNIT[unit] if is_chinese() else _en_unit(unit, quantity)
    return f"{text} {label}"


@register.filter
def num(value: Decimal | None) -> str:
    """A quantity without trailing zeros and never in exponent form (``10.0000`` → ``10``)."""
    if not isinstance(value, Decimal):
        return "" if value is None else str(value)
    return f"{value.normalize():f}"
