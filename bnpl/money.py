"""Money in CNY: the one place where amounts are parsed, rounded and formatted.

Every amount in the platform is a ``Decimal`` with two places (fen). Rounding is
half-up to the fen, the way Chinese receipts and payment providers round, and it
happens here only so that a bill rated in one place and charged in another can
never disagree by a fen.

This module is a dependency-free leaf (it imports nothing from the project), so
``merchants`` and ``consumers`` may use it without breaking the rule that the lower
apps import nothing from ``bnpl`` models or services.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, InvalidOperation

FEN = Decimal("0.01")
ZERO = Decimal("0.00")
MAX_DIGITS = 12
DECIMAL_PLACES = 2


class MoneyError(ValueError):
    """An amount that is not a finite decimal with at most two places."""


def to_money(value: Decimal | int | str) -> Decimal:
    """Round any finite decimal to the fen, half-up (``1.005`` → ``1.01``)."""
    amount = Decimal(value) if not isinstance(value, Decimal) else value
    if not amount.is_finite():
        raise MoneyError(f"{value!r} is not a finite amount")
    return amount.quantize(FEN, rounding=ROUND_HALF_UP)


def parse_money(value: object, *, allow_zero: bool = True, allow_negative: bool = False) -> Decimal:
    """Parse an amount given by a person or a system, strictly.

    Unlike :func:`to_money` this never rounds: ``"12.505"`` is refused rather than
    silently becoming ``12.51``, because an amount someone typed or sent must mean
    exactly what it says. Floats are refused for the same reason.
    """
    if isinstance(value, float | bool):
        raise MoneyError("amounts must be given as decimal strings, not floating-point numbers")
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError) as exc:
        raise MoneyError(f"{value!r} is not a decimal amount") from exc
    if not amount.is_finite():
        raise MoneyError(f"{value!r} is not a finite amount")
    if amount.as_tuple().exponent < -DECIMAL_PLACES:  # type: ignore[operator]
        raise MoneyError(f"{value!r} has more than two decimal places")
    if amount < 0 and not allow_negative:
        raise MoneyError(f"{value!r} is negative")
    if amount == 0 and not allow_zero:
        raise MoneyError("the amount must be greater than zero")
    if abs(amount) >= Decimal(10) ** (MAX_DIGITS - DECIMAL_PLACES):
        raise MoneyError(f"{value!r} is too large")
    return amount.quantize(FEN)


def ceil_units(quantity: Decimal) -> Decimal:
    """Round a usage quantity up to whole units (a started hour is a billed hour)."""
    return quantity.to_integral_value(rounding=ROUND_CEILING)


def format_cny(amount: Decimal | None) -> str:
    """``Decimal("1234.5")`` → ``"¥1,234.50"``; negative amounts as ``"-¥3.00"``."""
    if amount is None:
        return "—"
    amount = to_money(amount)
    sign = "-" if amount < 0 else ""
    return f"{sign}¥{abs(amount):,.2f}"
