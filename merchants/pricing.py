"""Pricing rules for merchant listings: parse, validate, rate usage into bill lines, describe.

A listing stores its pricing rule as JSON. Everything the platform does with that rule lives
here, in pure Python, so that the price a consumer agreed to at order time, the bill lines
shown at completion and the amount finally charged come from one implementation and can be
tested without a database. The lines mirror the ones WeChat Pay mandates per scenario
(首重费/续重费/包装费/保价费 for 先寄后付, 使用时长 for charging, a 24 h cap for rentals ...).

Rules of the house:

* every amount is a ``Decimal`` rounded by :func:`bnpl.money.to_money` (half-up to the fen)
  and every money field is parsed by :func:`bnpl.money.parse_money`, so nothing here can
  disagree by a fen with the code that charges;
* parsing never guesses: unknown keys, floats, negative values and extra decimal places are
  refused with a message per field (:class:`PricingRuleError.errors`), because a rule a
  merchant typed must mean exactly what it says;
* this module imports only the standard library and ``bnpl.money`` so it works without
  Django settings (management scripts, tests, the rating worker).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, ClassVar

from bnpl.money import FEN, ZERO, MoneyError, ceil_units, format_cny, parse_money, to_money

__all__ = [
    "BillLineDraft",
    "ExpressRule",
    "FixedRule",
    "PerUnitRule",
    "PricingRule",
    "PricingRuleError",
    "RuleKind",
    "Tier",
    "TieredRule",
    "Unit",
    "UsageItem",
    "WindowCharge",
    "bill_total",
    "describe",
    "parse_rule",
    "rate",
]

#: Django's key for errors that belong to no single field; reused so forms can show them as-is.
NON_FIELD_ERRORS = "__all__"
#: Unit prices and quantities may be finer than a fen (¥0.0167 per minute), but not arbitrarily.
QUANTITY_PLACES = 4
#: Same ceiling as money: anything larger is a typo, and would overflow the amount columns.
MAX_QUANTITY = Decimal(10) ** 10
CAP_WINDOW = timedelta(hours=24)
DEFAULT_FIXED_NAME = "商品金额"
CAP_DISCOUNT_NAME = "每24小时封顶减免"
MINIMUM_TOP_UP_NAME = "最低消费补足"
MAX_NAME_LENGTH = 64


class PricingRuleError(ValueError):
    """A pricing rule (or the usage rated against it) is invalid.

    ``errors`` maps the offending field (``"unit_price"``, ``"tiers[1].up_to"``, ``"quantity"``,
    ``"__all__"``) to an English message, so a form can put each message next to its field.
    """

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors: dict[str, str] = dict(errors)
        super().__init__("; ".join(f"{key}: {message}" for key, message in self.errors.items()))


class RuleKind(StrEnum):
    """The charge models we support; the values are what the JSON ``kind`` holds."""

    FIXED = "fixed"
    PER_UNIT = "per_unit"
    TIERED = "tiered"
    EXPRESS = "express"


class Unit(StrEnum):
    """What a usage quantity counts. Minutes and hours are *time* units (see the 24 h cap)."""

    KWH = "kwh"
    MINUTE = "minute"
    HOUR = "hour"
    VISIT = "visit"
    KG = "kg"
    ITEM = "item"


#: Length of one 24 h cap window, in the unit itself, for units that measure time.
TIME_UNIT_WINDOW: dict[Unit, Decimal] = {Unit.MINUTE: Decimal(1440), Unit.HOUR: Decimal(24)}

USAGE_LINE_NAMES: dict[Unit, str] = {
    Unit.HOUR: "使用时长",
    Unit.MINUTE: "使用时长",
    Unit.KWH: "电量",
    Unit.VISIT: "次数",
    Unit.KG: "重量",
    Unit.ITEM: "数量",
}

_ZH_UNIT: dict[Unit, str] = {
    Unit.KWH: "度",
    Unit.MINUTE: "分钟",
    Unit.HOUR: "小时",
    Unit.VISIT: "次",
    Unit.KG: "kg",
    Unit.ITEM: "件",
}

_EN_UNIT: dict[Unit, tuple[str, str]] = {
    Unit.KWH: ("kWh", "kWh"),
    Unit.MINUTE: ("minute", "minutes"),
    Unit.HOUR: ("hour", "hours"),
    Unit.VISIT: ("visit", "visits"),
    Unit.KG: ("kg", "kg"),
    Unit.ITEM: ("item", "items"),
}


@dataclass(frozen=True)
class UsageItem:
    """One usage event reported for an order (a meter reading, a visit, a parcel weighing).

    ``properties`` carries scenario extras, e.g. ``{"packaging": True, "declared_value": "500.00"}``
    for express parcels.
    """

    quantity: Decimal
    occurred_at: datetime
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BillLineDraft:
    """A bill line before it is stored. Discounts carry a positive amount and ``is_discount``."""

    name: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    amount: Decimal
    is_discount: bool = False


@dataclass(frozen=True)
class WindowCharge:
    """``count`` identical consecutive 24 h windows of a per-unit order, as rated.

    Identical windows are folded into one entry so that a (mistaken) usage of a million hours
    does not make rating loop a million times. All quantities and amounts are per window.
    """

    first_index: int
    count: int
    quantity: Decimal
    billable: Decimal
    amount: Decimal
    charged: Decimal


# --------------------------------------------------------------------------- formatting


def _fmt_number(value: Decimal) -> str:
    """``Decimal("10.00")`` → ``"10"``, ``Decimal("1.50")`` → ``"1.5"``: for people, not for storage."""
    return format(value.normalize(), "f")


def _fmt_quantity(value: Decimal) -> str:
    """Serialise a quantity exactly as held, but never in exponent notation (``1E+1`` → ``"10"``)."""
    return format(value, "f")


def _canonical_unit_price(value: Decimal) -> Decimal:
    """At least two places, no trailing zeros beyond them: ``1`` → ``1.00``, ``0.01670`` → ``0.0167``."""
    normalized = value.normalize()
    if normalized.as_tuple().exponent >= -2:  # type: ignore[operator]
        return value.quantize(FEN)
    return normalized


def _fmt_unit_price(value: Decimal) -> str:
    """Like :func:`format_cny`, but keeps the sub-fen digits of a unit price (``¥0.0167``)."""
    canonical = _canonical_unit_price(value)
    if canonical.as_tuple().exponent >= -2:  # type: ignore[operator]
        return format_cny(canonical)
    return f"¥{canonical:,f}"


def _en_unit(unit: Unit, quantity: Decimal | None = None) -> str:
    singular, plural = _EN_UNIT[unit]
    return singular if quantity is None or quantity == 1 else plural


def _is_english(language: str) -> bool:
    return language.lower().startswith("en")


# --------------------------------------------------------------------------- parsing helpers

_MISSING: Any = object()


def _parse_decimal(value: object, *, places: int = QUANTITY_PLACES) -> Decimal:
    """Parse a non-negative decimal given as a string (or int) with at most ``places`` places.

    Raises ``ValueError`` with a message meant for the merchant.
    """
    if isinstance(value, bool | float):
        raise ValueError("must be given as a decimal string, not a floating-point number or boolean")
    if not isinstance(value, str | int | Decimal):
        raise ValueError("must be a decimal string")
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"{value!r} is not a decimal number") from exc
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    if number.as_tuple().exponent < -places:  # type: ignore[operator]
        raise ValueError(f"{value!r} has more than {places} decimal places")
    if number < 0:
        raise ValueError(f"{value!r} is negative")
    if number >= MAX_QUANTITY:
        raise ValueError(f"{value!r} is too large")
    return number.copy_abs()  # turns "-0" into "0"


class _Reader:
    """Reads the fields of one JSON object, collecting every problem instead of stopping at the first.

    A merchant editing a rule should see everything that is wrong at once. Invalid fields yield
    a placeholder value; callers must check :attr:`errors` before building a rule.
    """

    def __init__(self, data: Mapping[str, Any], allowed: Iterable[str], prefix: str = "") -> None:
        self.data = data
        self.prefix = prefix
        self.errors: dict[str, str] = {}
        allowed_keys = set(allowed)
        for key in data:
            if key not in allowed_keys:
                self.errors[self.name(str(key))] = "Unknown field."

    def name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def _raw(self, key: str, required: bool) -> Any:
        if key in self.data:
            return self.data[key]
        if required:
            self.errors[self.name(key)] = "This field is required."
        return _MISSING

    def money(
        self,
        key: str,
        *,
        required: bool = False,
        default: Decimal | None = ZERO,
        allow_zero: bool = True,
        nullable: bool = False,
    ) -> Decimal | None:
        raw = self._raw(key, required)
        if raw is _MISSING:
            return default
        if raw is None:
            if nullable:
                return None
            self.errors[self.name(key)] = "This field may not be null."
            return default
        try:
            return parse_money(raw, allow_zero=allow_zero)
        except MoneyError as exc:
            self.errors[self.name(key)] = _sentence(str(exc))
            return default

    def decimal(
        self,
        key: str,
        *,
        required: bool = False,
        default: Decimal | None = Decimal(0),
        allow_zero: bool = True,
        maximum: Decimal | None = None,
        nullable: bool = False,
    ) -> Decimal | None:
        raw = self._raw(key, required)
        if raw is _MISSING:
            return default
        if raw is None:
            if nullable:
                return None
            self.errors[self.name(key)] = "This field may not be null."
            return default
        try:
            number = _parse_decimal(raw)
        except ValueError as exc:
            self.errors[self.name(key)] = _sentence(f"The value {exc}")
            return default
        if number == 0 and not allow_zero:
            self.errors[self.name(key)] = "The value must be greater than zero."
            return default
        if maximum is not None and number > maximum:
            self.errors[self.name(key)] = f"The value must not exceed {maximum}."
            return default
        return number

    def boolean(self, key: str, *, default: bool) -> bool:
        raw = self._raw(key, False)
        if raw is _MISSING:
            return default
        if not isinstance(raw, bool):
            self.errors[self.name(key)] = "The value must be true or false."
            return default
        return raw

    def unit(self, key: str) -> Unit:
        raw = self._raw(key, True)
        if raw is _MISSING:
            return Unit.ITEM
        try:
            return Unit(raw)
        except ValueError:
            choices = ", ".join(unit.value for unit in Unit)
            self.errors[self.name(key)] = f"Unknown unit {raw!r}; expected one of {choices}."
            return Unit.ITEM

    def text(self, key: str, *, default: str) -> str:
        raw = self._raw(key, False)
        if raw is _MISSING:
            return default
        if not isinstance(raw, str) or not raw.strip():
            self.errors[self.name(key)] = "The value must be a non-empty string."
            return default
        if len(raw.strip()) > MAX_NAME_LENGTH:
            self.errors[self.name(key)] = f"The value must be at most {MAX_NAME_LENGTH} characters."
            return default
        return raw.strip()

    def raise_if_invalid(self) -> None:
        if self.errors:
            raise PricingRuleError(self.errors)


def _sentence(message: str) -> str:
    message = message[:1].upper() + message[1:]
    return message if message.endswith(".") else f"{message}."


# --------------------------------------------------------------------------- usage helpers


def _checked_usage(usage: Sequence[UsageItem]) -> list[UsageItem]:
    """Refuse usage that cannot be billed honestly: negative or non-decimal quantities."""
    checked: list[UsageItem] = []
    for item in usage:
        quantity: object = item.quantity
        if isinstance(quantity, bool) or not isinstance(quantity, Decimal | int):
            raise PricingRuleError({"quantity": "Usage quantities must be decimals."})
        quantity = Decimal(quantity)
        if not quantity.is_finite():
            raise PricingRuleError({"quantity": "Usage quantities must be finite."})
        if quantity < 0:
            raise PricingRuleError({"quantity": f"Usage quantities must not be negative (got {quantity})."})
        checked.append(item if quantity is item.quantity else replace(item, quantity=quantity))
    return checked


def _total_quantity(items: Iterable[UsageItem]) -> Decimal:
    return sum((item.quantity for item in items), Decimal(0))


def _window_index(occurred_at: datetime, started_at: datetime) -> int:
    """Which 24 h window after ``started_at`` an event falls in; early events count as window 0."""
    try:
        index = (occurred_at - started_at) // CAP_WINDOW
    except TypeError as exc:  # naive vs aware datetimes
        raise PricingRuleError({"occurred_at": "Usage times and the start time must all be timezone-aware."}) from exc
    return max(index, 0)


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class FixedRule:
    """A price locked at order time (live-stream goods): usage does not change it."""

    kind: ClassVar[RuleKind] = RuleKind.FIXED
    price: Decimal
    name: str = DEFAULT_FIXED_NAME

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FixedRule:
        reader = _Reader(data, {"kind", "price", "name"})
        price = reader.money("price", required=True, allow_zero=False)
        name = reader.text("name", default=DEFAULT_FIXED_NAME)
        reader.raise_if_invalid()
        assert price is not None
        return cls(price=price, name=name)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "price": str(to_money(self.price)), "name": self.name}

    def rate(self, usage: Sequence[UsageItem], *, started_at: datetime) -> list[BillLineDraft]:
        _checked_usage(usage)
        price = to_money(self.price)
        return [BillLineDraft(self.name, Decimal(1), Unit.ITEM.value, price, price)]

    def describe(self, language: str = "zh-hans") -> str:
        if _is_english(language):
            return f"Fixed price {format_cny(self.price)}"
        return f"一口价{format_cny(self.price)}"


@dataclass(frozen=True)
class PerUnitRule:
    """A price per unit used (hour of e-bike charging, kWh, gym visit or minute).

    Optional free units per order, a minimum charge per order, a cap per 24 h, and rounding a
    started unit up to a whole one — the knobs Chinese rental and charging merchants advertise.
    """

    kind: ClassVar[RuleKind] = RuleKind.PER_UNIT
    unit: Unit
    unit_price: Decimal
    free_units: Decimal = Decimal(0)
    minimum_amount: Decimal = ZERO
    cap_per_24h: Decimal | None = None
    round_up: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PerUnitRule:
        reader = _Reader(
            data,
            {"kind", "unit", "unit_price", "free_units", "minimum_amount", "cap_per_24h", "round_up"},
        )
        unit = reader.unit("unit")
        unit_price = reader.decimal("unit_price", required=True)
        free_units = reader.decimal("free_units")
        minimum_amount = reader.money("minimum_amount")
        cap = reader.money("cap_per_24h", default=None, allow_zero=False, nullable=True)
        round_up = reader.boolean("round_up", default=False)
        reader.raise_if_invalid()
        assert unit_price is not None and free_units is not None and minimum_amount is not None
        return cls(
            unit=unit,
            unit_price=_canonical_unit_price(unit_price),
            free_units=free_units,
            minimum_amount=minimum_amount,
            cap_per_24h=cap,
            round_up=round_up,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "unit": self.unit.value,
            "unit_price": str(_canonical_unit_price(self.unit_price)),
            "free_units": _fmt_quantity(self.free_units),
            "minimum_amount": str(to_money(self.minimum_amount)),
            "cap_per_24h": None if self.cap_per_24h is None else str(to_money(self.cap_per_24h)),
            "round_up": self.round_up,
        }

    def _runs(self, items: Sequence[UsageItem], started_at: datetime) -> list[tuple[int, Decimal, int]]:
        """Split usage into 24 h windows as ``(first_index, quantity per window, count)`` runs.

        Time units are cut by the quantity itself (30 hours = 24 + 6), because a meter reports
        duration, not when each hour was used; other units are grouped by when they happened.
        """
        total = _total_quantity(items)
        if self.cap_per_24h is None:
            return [(0, total, 1)]
        window = TIME_UNIT_WINDOW.get(self.unit)
        if window is not None:
            full = int(total // window)
            rest = total - full * window
            runs = [(0, window, full)] if full else []
            if rest > 0:
                runs.append((full, rest, 1))
            return runs
        by_window: dict[int, Decimal] = {}
        for item in items:
            index = _window_index(item.occurred_at, started_at)
            by_window[index] = by_window.get(index, Decimal(0)) + item.quantity
        return [(index, quantity, 1) for index, quantity in sorted(by_window.items())]

    def _charge(self, index: int, count: int, quantity: Decimal, billable: Decimal) -> WindowCharge:
        if self.round_up:
            billable = ceil_units(billable)
        amount = to_money(billable * self.unit_price)
        charged = amount if self.cap_per_24h is None else min(amount, self.cap_per_24h)
        return WindowCharge(index, count, quantity, billable, amount, charged)

    def _windows(self, items: Sequence[UsageItem], started_at: datetime) -> list[WindowCharge]:
        free_left = self.free_units
        charges: list[WindowCharge] = []
        for index, quantity, count in self._runs(items, started_at):
            while count > 0:
                if free_left > 0 and quantity > 0:
                    if free_left >= quantity:  # whole windows are free
                        whole = min(count, int(free_left // quantity))
                        charges.append(self._charge(index, whole, quantity, Decimal(0)))
                        free_left -= whole * quantity
                        index, count = index + whole, count - whole
                    else:  # free units run out inside this window
                        charges.append(self._charge(index, 1, quantity, quantity - free_left))
                        free_left = Decimal(0)
                        index, count = index + 1, count - 1
                    continue
                charges.append(self._charge(index, count, quantity, quantity))
                count = 0
        return charges

    def windows(self, usage: Sequence[UsageItem], *, started_at: datetime) -> list[WindowCharge]:
        """The per-window breakdown behind :meth:`rate`, for explaining a capped bill to a consumer."""
        return self._windows(_checked_usage(usage), started_at)

    def rate(self, usage: Sequence[UsageItem], *, started_at: datetime) -> list[BillLineDraft]:
        items = _checked_usage(usage)
        if _total_quantity(items) == 0:
            return []
        charges = self._windows(items, started_at)
        billable = sum((c.billable * c.count for c in charges), Decimal(0))
        amount = to_money(sum((c.amount * c.count for c in charges), ZERO))
        charged = to_money(sum((c.charged * c.count for c in charges), ZERO))
        lines = [
            BillLineDraft(
                USAGE_LINE_NAMES[self.unit],
                billable,
                self.unit.value,
                _canonical_unit_price(self.unit_price),
                amount,
            )
        ]
        if amount > charged:
            reduction = amount - charged
            lines.append(BillLineDraft(CAP_DISCOUNT_NAME, Decimal(1), Unit.ITEM.value, reduction, reduction, True))
        if charged < self.minimum_amount:
            top_up = to_money(self.minimum_amount - charged)
            lines.append(BillLineDraft(MINIMUM_TOP_UP_NAME, Decimal(1), Unit.ITEM.value, top_up, top_up))
        return lines

    def describe(self, language: str = "zh-hans") -> str:
        price = _fmt_unit_price(self.unit_price)
        if _is_english(language):
            unit = _en_unit(self.unit)
            parts = [f"{price}/{unit}"]
            if self.free_units > 0:
                free = _fmt_number(self.free_units)
                parts.append(f"first {free} {_en_unit(self.unit, self.free_units)} free")
            if self.round_up:
                parts.append(f"each started {unit} billed in full")
            if self.cap_per_24h is not None:
                parts.append(f"capped at {format_cny(self.cap_per_24h)} per 24 h")
            if self.minimum_amount > 0:
                parts.append(f"minimum charge {format_cny(self.minimum_amount)}")
            return ", ".join(parts)
        unit = _ZH_UNIT[self.unit]
        parts = [f"{price}/{unit}"]
        if self.free_units > 0:
            parts.append(f"前{_fmt_number(self.free_units)}{unit}免费")
        if self.round_up:
            parts.append(f"不足1{unit}按1{unit}计")
        if self.cap_per_24h is not None:
            parts.append(f"每24小时封顶{format_cny(self.cap_per_24h)}")
        if self.minimum_amount > 0:
            parts.append(f"最低消费{format_cny(self.minimum_amount)}")
        return "，".join(parts)


@dataclass(frozen=True)
class Tier:
    """One step of a graduated price: units above the previous ``up_to`` and up to this one.

    ``up_to`` is ``None`` for the last, open-ended tier.
    """

    up_to: Decimal | None
    unit_price: Decimal

    def to_dict(self) -> dict[str, Any]:
        return {
            "up_to": None if self.up_to is None else _fmt_quantity(self.up_to),
            "unit_price": str(_canonical_unit_price(self.unit_price)),
        }


@dataclass(frozen=True)
class TieredRule:
    """Graduated pricing (every unit is priced by the tier it falls in), e.g. cheaper kWh in bulk."""

    kind: ClassVar[RuleKind] = RuleKind.TIERED
    unit: Unit
    tiers: tuple[Tier, ...]
    free_units: Decimal = Decimal(0)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TieredRule:
        reader = _Reader(data, {"kind", "unit", "tiers", "free_units"})
        unit = reader.unit("unit")
        free_units = reader.decimal("free_units")
        tiers = cls._parse_tiers(reader)
        reader.raise_if_invalid()
        assert free_units is not None
        return cls(unit=unit, tiers=tiers, free_units=free_units)

    @staticmethod
    def _parse_tiers(reader: _Reader) -> tuple[Tier, ...]:
        raw = reader._raw("tiers", True)
        if raw is _MISSING:
            return ()
        if not isinstance(raw, list | tuple) or not raw:
            reader.errors["tiers"] = "Give a non-empty list of tiers."
            return ()
        tiers: list[Tier] = []
        previous: Decimal | None = None
        last = len(raw) - 1
        for position, raw_tier in enumerate(raw):
            prefix = f"tiers[{position}]."
            if not isinstance(raw_tier, Mapping):
                reader.errors[f"tiers[{position}]"] = "Each tier must be an object with up_to and unit_price."
                continue
            tier_reader = _Reader(raw_tier, {"up_to", "unit_price"}, prefix=prefix)
            up_to = tier_reader.decimal("up_to", required=True, allow_zero=False, nullable=True, default=None)
            unit_price = tier_reader.decimal("unit_price", required=True)
            if "up_to" in raw_tier and f"{prefix}up_to" not in tier_reader.errors:
                if up_to is None and position != last:
                    tier_reader.errors[f"{prefix}up_to"] = "Only the last tier may be open-ended (null)."
                elif up_to is not None and position == last:
                    tier_reader.errors[f"{prefix}up_to"] = "The last tier must be open-ended (null)."
                elif up_to is not None and previous is not None and up_to <= previous:
                    tier_reader.errors[f"{prefix}up_to"] = (
                        f"Tier limits must increase strictly ({_fmt_number(up_to)} follows {_fmt_number(previous)})."
                    )
            reader.errors.update(tier_reader.errors)
            if up_to is not None:
                previous = up_to if previous is None else max(previous, up_to)
            if unit_price is not None:
                tiers.append(Tier(up_to=up_to, unit_price=_canonical_unit_price(unit_price)))
        return tuple(tiers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "unit": self.unit.value,
            "tiers": [tier.to_dict() for tier in self.tiers],
            "free_units": _fmt_quantity(self.free_units),
        }

    def rate(self, usage: Sequence[UsageItem], *, started_at: datetime) -> list[BillLineDraft]:
        items = _checked_usage(usage)
        total = _total_quantity(items)
        if total == 0:
            return []
        billable = max(total - self.free_units, Decimal(0))
        lines: list[BillLineDraft] = []
        lower = Decimal(0)
        for number, tier in enumerate(self.tiers, start=1):
            upper = tier.up_to
            in_tier = (billable if upper is None else min(billable, upper)) - lower
            if in_tier > 0:
                span = f"{_fmt_number(lower)}" + ("+" if upper is None else f"–{_fmt_number(upper)}")
                lines.append(
                    BillLineDraft(
                        f"第{number}档 ({span} {self.unit.value})",
                        in_tier,
                        self.unit.value,
                        tier.unit_price,
                        to_money(in_tier * tier.unit_price),
                    )
                )
            if upper is None or billable <= upper:
                break
            lower = upper
        return lines

    def describe(self, language: str = "zh-hans") -> str:
        english = _is_english(language)
        steps: list[str] = []
        lower = Decimal(0)
        for tier in self.tiers:
            price = _fmt_unit_price(tier.unit_price)
            if english:
                unit = _en_unit(self.unit)
                if tier.up_to is None and len(self.tiers) == 1:
                    steps.append(f"{price}/{unit}")
                elif tier.up_to is None:
                    steps.append(f"over {_fmt_number(lower)} {unit} at {price}/{unit}")
                else:
                    steps.append(f"{_fmt_number(lower)}–{_fmt_number(tier.up_to)} {unit} at {price}/{unit}")
            else:
                unit = _ZH_UNIT[self.unit]
                if tier.up_to is None and len(self.tiers) == 1:
                    steps.append(f"{price}/{unit}")
                elif tier.up_to is None:
                    steps.append(f"{_fmt_number(lower)}{unit}以上 {price}/{unit}")
                else:
                    steps.append(f"{_fmt_number(lower)}–{_fmt_number(tier.up_to)}{unit} {price}/{unit}")
            if tier.up_to is not None:
                lower = tier.up_to
        if english:
            text = "Tiered: " + "; ".join(steps)
            if self.free_units > 0:
                text += f", first {_fmt_number(self.free_units)} {_en_unit(self.unit, self.free_units)} free"
            return text
        text = "阶梯计价：" + "；".join(steps)
        if self.free_units > 0:
            text += f"，前{_fmt_number(self.free_units)}{_ZH_UNIT[self.unit]}免费"
        return text


@dataclass(frozen=True)
class ExpressRule:
    """先寄后付 express delivery: first-weight fee, per-kg additional weight, packaging, insurance.

    One parcel per order; the weight is the sum of the usage quantities (kg).
    """

    kind: ClassVar[RuleKind] = RuleKind.EXPRESS
    first_weight_kg: Decimal
    first_weight_fee: Decimal
    additional_per_kg: Decimal
    packaging_fee: Decimal = ZERO
    insurance_rate: Decimal = Decimal(0)
    insurance_min_fee: Decimal = ZERO

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExpressRule:
        reader = _Reader(
            data,
            {
                "kind",
                "first_weight_kg",
                "first_weight_fee",
                "additional_per_kg",
                "packaging_fee",
                "insurance_rate",
                "insurance_min_fee",
            },
        )
        first_weight_kg = reader.decimal("first_weight_kg", required=True, allow_zero=False)
        first_weight_fee = reader.money("first_weight_fee", required=True)
        additional_per_kg = reader.money("additional_per_kg", required=True)
        packaging_fee = reader.money("packaging_fee")
        insurance_rate = reader.decimal("insurance_rate", maximum=Decimal(1))
        insurance_min_fee = reader.money("insurance_min_fee")
        reader.raise_if_invalid()
        assert first_weight_kg is not None and first_weight_fee is not None and additional_per_kg is not None
        assert packaging_fee is not None and insurance_rate is not None and insurance_min_fee is not None
        return cls(
            first_weight_kg=first_weight_kg,
            first_weight_fee=first_weight_fee,
            additional_per_kg=additional_per_kg,
            packaging_fee=packaging_fee,
            insurance_rate=insurance_rate,
            insurance_min_fee=insurance_min_fee,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "first_weight_kg": _fmt_quantity(self.first_weight_kg),
            "first_weight_fee": str(to_money(self.first_weight_fee)),
            "additional_per_kg": str(to_money(self.additional_per_kg)),
            "packaging_fee": str(to_money(self.packaging_fee)),
            "insurance_rate": _fmt_quantity(self.insurance_rate),
            "insurance_min_fee": str(to_money(self.insurance_min_fee)),
        }

    def rate(self, usage: Sequence[UsageItem], *, started_at: datetime) -> list[BillLineDraft]:
        """Bill one parcel.

        ``properties["packaging"]`` must be the JSON boolean ``true`` to add packaging; declared
        values (``properties["declared_value"]``, decimal strings) are summed over usage items,
        normally only one carries it. No insurance line when the declared value or the fee is 0.
        """
        items = _checked_usage(usage)
        weight = _total_quantity(items)
        if weight == 0:
            return []
        item_unit = Unit.ITEM.value
        fee = to_money(self.first_weight_fee)
        lines = [BillLineDraft("首重费", Decimal(1), item_unit, fee, fee)]
        if weight > self.first_weight_kg:
            extra = ceil_units(weight - self.first_weight_kg)
            per_kg = to_money(self.additional_per_kg)
            lines.append(BillLineDraft("续重费", extra, Unit.KG.value, per_kg, to_money(extra * per_kg)))
        if self.packaging_fee > 0 and any(item.properties.get("packaging") is True for item in items):
            packaging = to_money(self.packaging_fee)
            lines.append(BillLineDraft("包装费", Decimal(1), item_unit, packaging, packaging))
        declared = self._declared_value(items)
        if declared is not None and declared > 0:
            insurance = max(to_money(declared * self.insurance_rate), to_money(self.insurance_min_fee))
            if insurance > 0:
                lines.append(BillLineDraft("保价费", Decimal(1), item_unit, insurance, insurance))
        return lines

    @staticmethod
    def _declared_value(items: Sequence[UsageItem]) -> Decimal | None:
        declared: Decimal | None = None
        for item in items:
            raw = item.properties.get("declared_value")
            if raw is None:
                continue
            try:
                value = parse_money(raw)
            except MoneyError as exc:
                raise PricingRuleError({"declared_value": _sentence(str(exc))}) from exc
            declared = value if declared is None else declared + value
        return declared

    def describe(self, language: str = "zh-hans") -> str:
        first = _fmt_number(self.first_weight_kg)
        fee, per_kg = format_cny(self.first_weight_fee), format_cny(self.additional_per_kg)
        percent = _fmt_number(self.insurance_rate * 100)
        minimum = format_cny(self.insurance_min_fee)
        if _is_english(language):
            parts = [f"{fee} for the first {first} kg, then {per_kg}/kg"]
            if self.packaging_fee > 0:
                parts.append(f"packaging {format_cny(self.packaging_fee)}")
            if self.insurance_rate > 0:
                min_text = f" (min {minimum})" if self.insurance_min_fee > 0 else ""
                parts.append(f"insurance {percent}% of declared value{min_text}")
            elif self.insurance_min_fee > 0:
                parts.append(f"insurance {minimum}")
            return ", ".join(parts)
        parts = [f"首重{fee}（{first}kg），续重{per_kg}/kg"]
        if self.packaging_fee > 0:
            parts.append(f"包装费{format_cny(self.packaging_fee)}")
        if self.insurance_rate > 0:
            min_text = f"（最低{minimum}）" if self.insurance_min_fee > 0 else ""
            parts.append(f"保价费为声明价值的{percent}%{min_text}")
        elif self.insurance_min_fee > 0:
            parts.append(f"保价费{minimum}")
        return "，".join(parts)


PricingRule = FixedRule | PerUnitRule | TieredRule | ExpressRule

_RULE_CLASSES: dict[RuleKind, type[FixedRule] | type[PerUnitRule] | type[TieredRule] | type[ExpressRule]] = {
    RuleKind.FIXED: FixedRule,
    RuleKind.PER_UNIT: PerUnitRule,
    RuleKind.TIERED: TieredRule,
    RuleKind.EXPRESS: ExpressRule,
}


# --------------------------------------------------------------------------- public functions


def parse_rule(data: Mapping[str, Any]) -> PricingRule:
    """Validate a rule's JSON and build it; every problem is reported in ``PricingRuleError.errors``."""
    if not isinstance(data, Mapping):
        raise PricingRuleError({NON_FIELD_ERRORS: "A pricing rule must be a JSON object."})
    if "kind" not in data:
        raise PricingRuleError({"kind": "This field is required."})
    raw_kind = data["kind"]
    try:
        kind = RuleKind(raw_kind)
    except ValueError:
        choices = ", ".join(kind.value for kind in RuleKind)
        message = f"Unknown pricing rule kind {raw_kind!r}; expected one of {choices}."
        raise PricingRuleError({"kind": message}) from None
    return _RULE_CLASSES[kind].from_dict(data)


def rate(rule: PricingRule, usage: Sequence[UsageItem], *, started_at: datetime) -> list[BillLineDraft]:
    """Turn an order's usage into bill lines under ``rule`` (an empty list means nothing to bill)."""
    if not isinstance(rule, PricingRule):
        raise TypeError(f"not a pricing rule: {rule!r}")
    return rule.rate(usage, started_at=started_at)


def bill_total(lines: Iterable[BillLineDraft]) -> Decimal:
    """What the consumer owes for these lines: charges minus discounts, to the fen."""
    total = ZERO
    for line in lines:
        total += -line.amount if line.is_discount else line.amount
    return to_money(total)


def describe(rule: PricingRule, language: str = "zh-hans") -> str:
    """The rule in plain words for the listing page and the consent screen (zh by default, or en)."""
    return rule.describe(language)
