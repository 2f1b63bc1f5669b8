"""Enumerations of the consumers app."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class ScoreBand(models.TextChoices):
    """Sesame-style bands (product.md): 350–549 较差 … 700–950 极好."""

    POOR = "poor", _("Poor")
    FAIR = "fair", _("Fair")
    GOOD = "good", _("Good")
    VERY_GOOD = "very_good", _("Very good")
    EXCELLENT = "excellent", _("Excellent")


# Lower bound of each band, highest first.
BAND_FLOORS: tuple[tuple[int, str], ...] = (
    (700, ScoreBand.EXCELLENT),
    (650, ScoreBand.VERY_GOOD),
    (600, ScoreBand.GOOD),
    (550, ScoreBand.FAIR),
    (350, ScoreBand.POOR),
)


def band_for_score(score: int) -> str:
    for floor, band in BAND_FLOORS:
        if score >= floor:
            return band
    return ScoreBand.POOR


class PromiseOutcome(models.TextChoices):
    """守约记录: how a finished order ended for the consumer's record."""

    FULFILLED = "fulfilled", _("Fulfilled")
    CANCELLED = "cancelled", _("Cancelled")
    BREACHED = "breached", _("Breached")
    RECOVERED = "recovered", _("Recovered")


class ProfileEventKind(models.TextChoices):
    """What changed on a credit profile, besides the limit (which has its own LimitChange rows)."""

    PAUSED = "paused", _("Paused")
    UNPAUSED = "unpaused", _("Pause lifted")
    SCORE_CHANGED = "score_changed", _("Score changed")
    SPEND_CAP_SET = "spend_cap_set", _("Personal spend cap changed")


class LimitChangeReason(models.TextChoices):
    INITIAL = "initial", _("Initial limit")
    STAFF = "staff", _("Staff adjustment")
    GROWTH = "growth", _("Growth for kept promises")
    BREACH = "breach", _("Breach reduction")
    REWARD = "reward", _("Rewards level perk")


class PointsKind(models.TextChoices):
    """Why a points entry was posted (守约激励)."""

    KEPT = "kept", _("Kept promise")
    STREAK = "streak", _("Streak bonus")
    CAMPAIGN = "campaign", _("Merchant campaign")
    ADJUSTMENT = "adjustment", _("Adjustment")
    BREACH = "breach", _("Breach")
    SPEND = "spend", _("Spent")
    EXPIRY = "expiry", _("Expired")


class PerkKind(models.TextChoices):
    """A perk that is used up (counted per period), as opposed to one that simply applies."""

    FREE_EXTENSION = "free_extension", _("Free due-date extension")


class RewardLevel(models.TextChoices):
    """The rewards programme's levels, lowest first (thresholds and perks: ``consumers.rewards_policy``)."""

    NEWCOMER = "newcomer", _("Promise Newcomer")  # 守约新星
    EXPERT = "expert", _("Promise Expert")  # 守约达人
    STAR = "star", _("Promise Star")  # 守约之星
