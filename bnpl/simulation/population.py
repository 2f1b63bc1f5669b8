"""The simulated population: hidden risk types as data, and the people drawn from them.

A person's *risk type* is hidden from the platform: it decides how they fund their card, never what the platform
is told. The platform only sees what a real consumer would show it: a starting credit score (drawn from a range
that overlaps between types, so scoring has something to learn but cannot read the type off the score), orders,
payments and missed payments. ``manage.py simulate`` prints the outcomes by hidden type, which is how one checks
that the platform's records (promise records, overdue buckets, the reminder report) recover the behaviour.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from merchants.choices import Scenario


@dataclass(frozen=True, kw_only=True)
class RiskType:
    """How one kind of consumer pays, and how common they are.

    ``funded``: the card always holds enough (topped up from salary when it runs low). Otherwise the card holds
    nothing and the consumer funds it with exactly what is owed: ``fund_after`` (days, drawn uniformly) after the
    first failed charge, or ``reminder_response`` hours after a reminder reaches them (with probability
    ``reminder_probability`` per reminder) — or never, when neither is set.
    """

    key: str
    label: str
    share: float
    score_range: tuple[int, int]
    funded: bool = False
    fund_after: tuple[int, int] | None = None
    reminder_response: tuple[int, int] | None = None
    reminder_probability: float = 0.0


ALWAYS_PAY = "always_pay"
PAY_LATE = "pay_late"
PAY_AFTER_REMINDER = "pay_after_reminder"
DEFAULT = "default"

RISK_TYPES: tuple[RiskType, ...] = (
    RiskType(key=ALWAYS_PAY, label="always pay", share=0.70, score_range=(560, 820), funded=True),
    RiskType(key=PAY_LATE, label="pay late", share=0.12, score_range=(540, 720), fund_after=(2, 12)),
    RiskType(
        key=PAY_AFTER_REMINDER,
        label="pay after reminders",
        share=0.10,
        score_range=(550, 760),
        reminder_response=(1, 10),
        reminder_probability=0.8,
    ),
    RiskType(key=DEFAULT, label="default", share=0.08, score_range=(520, 700)),
)
RISK_TYPES_BY_KEY = {risk.key: risk for risk in RISK_TYPES}

#: What a funded card starts with, and what salary tops it back up to when it falls below ``SALARY_FLOOR``.
SALARY_BALANCE = Decimal("3000.00")
SALARY_FLOOR = Decimal("400.00")

#: Mean orders per person per day, before each person's own activity factor (a lognormal around 1).
DEFAULT_ORDER_RATE = 0.06

#: How likely each scenario is a person's favourite (they use a second one at a quarter of the rate).
SCENARIO_WEIGHTS: dict[str, float] = {
    Scenario.EBIKE_CHARGING: 0.35,
    Scenario.EXPRESS_DELIVERY: 0.25,
    Scenario.SWIMMING_FITNESS: 0.20,
    Scenario.LIVE_SHOPPING: 0.20,
}

#: Shares of confirm-each-time orders the consumer never confirms (they expire) or cancels before using.
ABANDON_SHARE = 0.03
CANCEL_SHARE = 0.02


@dataclass(frozen=True)
class Person:
    """One simulated consumer as drawn: index (stable across runs), hidden type, score and habits."""

    index: int
    risk: RiskType
    score: int
    verified: bool
    order_rate: float  # expected orders per day
    scenarios: tuple[tuple[str, float], ...]  # (scenario, weight) they order from
    active_hour: int  # the hour of the day they usually order (Beijing time)


def draw_population(rng: random.Random, size: int, *, order_rate: float = DEFAULT_ORDER_RATE) -> list[Person]:
    """``size`` people drawn from :data:`RISK_TYPES` with ``rng``; the same seed always gives the same people."""
    risks = [risk for risk in RISK_TYPES]
    weights = [risk.share for risk in risks]
    scenario_names = list(SCENARIO_WEIGHTS)
    scenario_weights = [SCENARIO_WEIGHTS[name] for name in scenario_names]
    people = []
    for index in range(1, size + 1):
        risk = rng.choices(risks, weights)[0]
        favourite = rng.choices(scenario_names, scenario_weights)[0]
        second = rng.choice([name for name in scenario_names if name != favourite])
        people.append(
            Person(
                index=index,
                risk=risk,
                score=rng.randint(*risk.score_range),
                verified=rng.random() < 0.9,
                order_rate=order_rate * rng.lognormvariate(0.0, 0.5),
                scenarios=((favourite, 1.0), (second, 0.25)),
                active_hour=rng.choice([8, 9, 12, 13, 17, 18, 19, 20, 21]),
            )
        )
    return people


def funding_delay(rng: random.Random, risk: RiskType) -> timedelta | None:
    """When a consumer of ``risk`` funds their card after a failed charge; None if they never do on their own."""
    if risk.fund_after is None:
        return None
    low, high = risk.fund_after
    return timedelta(days=rng.uniform(low, high))


def reminder_delay(rng: random.Random, risk: RiskType) -> timedelta | None:
    """How long after a reminder reaches them a consumer of ``risk`` pays, or None if this one goes unheeded."""
    if risk.reminder_response is None or rng.random() >= risk.reminder_probability:
        return None
    low, high = risk.reminder_response
    return timedelta(hours=rng.uniform(low, high))
