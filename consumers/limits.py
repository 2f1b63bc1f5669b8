"""The limit ladder: where a consumer's credit limit starts, how it grows and how it falls.

Pure data and arithmetic (no models, no queries), so the consumers services that apply
it and the scoring app that decides *when* to apply it share one table. Afterpay's
rule, which the product copies: a limit starts low, grows with kept promises, tenure
and frequency, and falls after a miss. Here tenure and frequency act through the score
band (a longer, busier, clean history scores higher, and a higher band has a larger
step and ceiling); kept promises act through the growth trigger (every
``GROWTH_EVERY_KEPT`` kept promises).

Change a number here and bump :data:`LIMIT_POLICY_VERSION`: admission decisions record
the version they ran under.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from .choices import ScoreBand, band_for_score

LIMIT_POLICY_VERSION = "limits-1"


@dataclass(frozen=True)
class LimitRung:
    """One band's limits: the starting limit, the most growth can reach, and one growth step."""

    initial: Decimal
    ceiling: Decimal
    step: Decimal


# Limits start low on purpose (a new consumer has no repayment history with us); the
# ceilings are five to six times the start, reached only after many kept promises.
LIMIT_LADDER: dict[str, LimitRung] = {
    ScoreBand.POOR: LimitRung(Decimal("200.00"), Decimal("500.00"), Decimal("50.00")),
    ScoreBand.FAIR: LimitRung(Decimal("500.00"), Decimal("1500.00"), Decimal("100.00")),
    ScoreBand.GOOD: LimitRung(Decimal("1000.00"), Decimal("3000.00"), Decimal("200.00")),
    ScoreBand.VERY_GOOD: LimitRung(Decimal("2000.00"), Decimal("6000.00"), Decimal("400.00")),
    ScoreBand.EXCELLENT: LimitRung(Decimal("3000.00"), Decimal("10000.00"), Decimal("500.00")),
}

# The limit grows once per this many kept (fulfilled) promises.
GROWTH_EVERY_KEPT = 5
# A breach keeps this share of the limit (rounded down to whole ¥10), so the next
# orders are smaller while the consumer rebuilds their record.
BREACH_KEEP_RATIO = Decimal("0.5")
LIMIT_GRANULARITY = Decimal("10")

# The starting limit by band, as a plain mapping (the registration service and its tests read it).
INITIAL_LIMIT_BY_BAND: dict[str, Decimal] = {band: rung.initial for band, rung in LIMIT_LADDER.items()}


def initial_limit_for_score(score: int) -> Decimal:
    """The limit a consumer signing up with ``score`` starts with."""
    return LIMIT_LADDER[band_for_score(score)].initial


def grown_limit(current: Decimal, score: int) -> Decimal:
    """The limit after one growth step for a consumer with ``score``: one step, never past the band's ceiling.

    A limit already at or above the ceiling (set by staff, or from a higher band
    before the score fell) stays where it is: growth never lowers a limit.
    """
    rung = LIMIT_LADDER[band_for_score(score)]
    if current >= rung.ceiling:
        return current
    return min(current + rung.step, rung.ceiling)


def cut_limit(current: Decimal) -> Decimal:
    """The limit after a breach: ``BREACH_KEEP_RATIO`` of it, rounded down to whole ¥10."""
    kept = (current * BREACH_KEEP_RATIO / LIMIT_GRANULARITY).to_integral_value(rounding=ROUND_DOWN)
    return (kept * LIMIT_GRANULARITY).quantize(Decimal("0.01"))
