"""守约激励: the rewards programme's numbers, in one place.

Pure data and arithmetic (no models, no queries), like :mod:`consumers.limits`: the
services that award and spend points, the overdue job that reads the grace period,
the portal pages and the tests all read these tables. Change a number here and bump
:data:`REWARDS_POLICY_VERSION` (it is written on every points entry's reason data).

Two counters, on purpose:

- **points** are a currency: earned for kept promises, spent, lost on a breach, and they
  expire :data:`POINTS_EXPIRE_MONTHS` months after they were earned (oldest first);
- **promise value** (守约值) decides the level: +1 per kept promise, never spent, never
  expires, and a breach sets it back to the floor of the level below. Spending points
  therefore never costs a level; only a breach does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .choices import RewardLevel

REWARDS_POLICY_VERSION = "rewards-1"


@dataclass(frozen=True)
class LevelPolicy:
    """One level: the promise value it starts at and its perks.

    ``limit_steps`` is how many growth steps of the consumer's band the limit gains on
    reaching the level (never past the band's ceiling, see ``consumers.limits``);
    ``extra_grace`` lengthens the grace period before an unpaid order becomes overdue;
    ``free_extensions_per_quarter`` due-date extensions cost no points; ``member_campaigns``
    opens merchants' level-only campaigns (their coupons) to the consumer.
    """

    level: str
    floor: int
    limit_steps: int
    extra_grace: timedelta
    free_extensions_per_quarter: int
    member_campaigns: bool


LEVELS: tuple[LevelPolicy, ...] = (
    LevelPolicy(RewardLevel.NEWCOMER, 0, 0, timedelta(0), 0, False),
    LevelPolicy(RewardLevel.EXPERT, 10, 1, timedelta(days=1), 1, False),
    LevelPolicy(RewardLevel.STAR, 30, 1, timedelta(days=3), 1, True),
)
LEVEL_POLICY: dict[str, LevelPolicy] = {p.level: p for p in LEVELS}
LEVEL_RANK: dict[str, int] = {p.level: i for i, p in enumerate(LEVELS)}

# Points for one kept promise, and the streak bonus: (streak at least, bonus), highest first.
POINTS_PER_KEPT = 10
STREAK_BONUSES: tuple[tuple[int, int], ...] = ((10, 20), (5, 10), (3, 5))
# A breach costs this many points (never more than the balance: points cannot go negative).
BREACH_POINTS = 50
# Points expire this many calendar months after they were earned.
POINTS_EXPIRE_MONTHS = 12
# What one point is worth to the programme (a merchant campaign paying out points is charged this per point).
POINT_VALUE_YUAN = "0.01"


def level_for(promise_value: int) -> str:
    """The level a consumer with ``promise_value`` is at."""
    level = LEVELS[0].level
    for policy in LEVELS:
        if promise_value >= policy.floor:
            level = policy.level
    return level


def next_level(level: str) -> LevelPolicy | None:
    """The level above ``level``, or None at the top."""
    rank = LEVEL_RANK[level]
    return LEVELS[rank + 1] if rank + 1 < len(LEVELS) else None


def value_after_breach(promise_value: int) -> int:
    """The promise value after a breach: the floor of the level below the current one (0 at the bottom)."""
    rank = LEVEL_RANK[level_for(promise_value)]
    return LEVELS[max(rank - 1, 0)].floor


def streak_bonus(streak: int) -> int:
    """Bonus points for the ``streak``-th kept promise in a row."""
    for at_least, bonus in STREAK_BONUSES:
        if streak >= at_least:
            return bonus
    return 0


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus calendar ``months``, clamped to the month's last day (31 Jan + 1 → 28/29 Feb)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    for day in (moment.day, 30, 29, 28):
        try:
            return moment.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def expiry_for(earned_at: datetime) -> datetime:
    """When points earned at ``earned_at`` expire."""
    return add_months(earned_at, POINTS_EXPIRE_MONTHS)


def quarter_of(moment: datetime) -> str:
    """The calendar quarter (Beijing time) of ``moment``, as ``2026Q4``: one free extension per quarter."""
    from django.utils import timezone

    local = timezone.localtime(moment)
    return f"{local.year}Q{(local.month - 1) // 3 + 1}"
