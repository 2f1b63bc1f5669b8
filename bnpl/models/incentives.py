"""Merchant campaigns (芝麻GO-like "keep N promises with us → a benefit"), progress and coupons.

The points ledger and levels live in ``consumers`` (they need nothing from orders); campaigns live
here because their progress is driven by the order flow (``bnpl.incentives``). docs/incentives.md.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from consumers.choices import RewardLevel


class CampaignStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    PAUSED = "paused", _("Paused")
    EXHAUSTED = "exhausted", _("Budget used up")
    ENDED = "ended", _("Ended")


# The campaign state machine: one service per move (bnpl.incentives); exhausted is reached by an award.
CAMPAIGN_TRANSITIONS: dict[str, frozenset[str]] = {
    CampaignStatus.ACTIVE: frozenset({CampaignStatus.PAUSED, CampaignStatus.EXHAUSTED, CampaignStatus.ENDED}),
    CampaignStatus.PAUSED: frozenset({CampaignStatus.ACTIVE, CampaignStatus.ENDED}),
    CampaignStatus.EXHAUSTED: frozenset({CampaignStatus.ENDED}),
    CampaignStatus.ENDED: frozenset(),
}


class BenefitKind(models.TextChoices):
    COUPON = "coupon", _("Coupon")
    POINTS = "points", _("Points")


class CouponStatus(models.TextChoices):
    ISSUED = "issued", _("Issued")
    USED = "used", _("Used")
    EXPIRED = "expired", _("Expired")


class Campaign(models.Model):
    """A merchant-funded campaign: keep ``goal_count`` promises with the merchant → a benefit.

    The benefit is a coupon of ``benefit_amount`` or ``benefit_points`` points; each award
    costs ``cost_amount`` (the coupon's value, or the points at the programme's point value),
    fixed at creation. ``spent_amount`` is what the awards cost so far and never passes
    ``budget_amount``: it moves by one conditional UPDATE per award (a check constraint
    holds it too), so concurrent awards cannot overspend. ``min_level`` restricts a
    campaign to consumers at or above a rewards level (a level perk: members' coupons).
    """

    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="campaigns")
    title = models.CharField(_("Title"), max_length=80)
    goal_count = models.PositiveSmallIntegerField(_("Promises to keep"))
    benefit_kind = models.CharField(_("Benefit"), max_length=8, choices=BenefitKind.choices)
    benefit_amount = models.DecimalField(_("Coupon amount"), max_digits=10, decimal_places=2, null=True, blank=True)
    benefit_points = models.PositiveIntegerField(_("Points"), null=True, blank=True)
    cost_amount = models.DecimalField(_("Cost per award"), max_digits=10, decimal_places=2)
    budget_amount = models.DecimalField(_("Budget"), max_digits=12, decimal_places=2)
    spent_amount = models.DecimalField(_("Spent"), max_digits=12, decimal_places=2, default=Decimal("0.00"))
    awards_count = models.PositiveIntegerField(_("Awards"), default=0)
    min_level = models.CharField(_("Open to"), max_length=16, choices=RewardLevel.choices, default=RewardLevel.NEWCOMER)
    coupon_valid_days = models.PositiveSmallIntegerField(_("Coupon valid for (days)"), default=30)
    status = models.CharField(_("Status"), max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.ACTIVE)
    starts_at = models.DateTimeField(_("Starts at"), default=timezone.now)
    ends_at = models.DateTimeField(_("Ends at"), null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("Created at"), auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("Campaign")
        verbose_name_plural = _("Campaigns")
        ordering = ["-created_at", "-id"]
        indexes = [
            # Progress on every kept promise: the merchant's active campaigns.
            models.Index(fields=["merchant"], condition=Q(status="active"), name="campaign_active_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(goal_count__gte=1), name="campaign_goal_positive"),
            models.CheckConstraint(condition=Q(cost_amount__gt=0), name="campaign_cost_positive"),
            models.CheckConstraint(
                condition=Q(spent_amount__gte=0) & Q(spent_amount__lte=F("budget_amount")),
                name="campaign_within_budget",
            ),
            models.CheckConstraint(
                condition=(Q(benefit_kind="coupon") & Q(benefit_amount__gt=0) & Q(benefit_points__isnull=True))
                | (Q(benefit_kind="points") & Q(benefit_points__gt=0) & Q(benefit_amount__isnull=True)),
                name="campaign_benefit_matches_kind",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def remaining_amount(self) -> Decimal:
        return self.budget_amount - self.spent_amount


class CampaignProgress(models.Model):
    """One consumer's progress in one campaign: kept promises counted, and the award once reached.

    ``missed_budget`` records that the goal was reached after the budget ran out (no award).
    """

    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="progress")
    consumer = models.ForeignKey("consumers.Consumer", on_delete=models.PROTECT, related_name="campaign_progress")
    kept_count = models.PositiveSmallIntegerField(_("Kept"), default=0)
    last_order_id = models.BigIntegerField(null=True, blank=True)
    awarded_at = models.DateTimeField(_("Awarded at"), null=True, blank=True)
    missed_budget = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("Campaign progress")
        verbose_name_plural = _("Campaign progress")
        ordering = ["-updated_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "consumer"], name="campaign_progress_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}/{self.consumer_id}: {self.kept_count}"


class Coupon(models.Model):
    """A coupon a campaign awarded: ``amount`` off a later order with the merchant, until ``expires_at``."""

    consumer = models.ForeignKey("consumers.Consumer", on_delete=models.PROTECT, related_name="coupons")
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+")
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="coupons")
    amount = models.DecimalField(_("Amount"), max_digits=10, decimal_places=2)
    status = models.CharField(_("Status"), max_length=8, choices=CouponStatus.choices, default=CouponStatus.ISSUED)
    expires_at = models.DateTimeField(_("Valid until"))
    created_at = models.DateTimeField(_("Issued at"), default=timezone.now)
    # Redemption (bnpl.incentives.coupon_redeem_for_order): the order it was taken off, once.
    # One-to-one: one coupon per order.
    used_order = models.OneToOneField(
        "bnpl.CreditOrder",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="coupon_used",
        verbose_name=_("Used on order"),
    )
    used_at = models.DateTimeField(_("Used at"), null=True, blank=True)
    used_amount = models.DecimalField(_("Amount taken off"), max_digits=10, decimal_places=2, null=True, blank=True)

    class Meta:
        verbose_name = _("Coupon")
        verbose_name_plural = _("Coupons")
        ordering = ["-created_at", "-id"]
        indexes = [
            # Redemption at completion: the consumer's usable coupons of one merchant, oldest first.
            models.Index(
                fields=["consumer", "merchant", "expires_at"], condition=Q(status="issued"), name="coupon_usable_idx"
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "consumer"], name="coupon_one_per_campaign"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="coupon_amount_positive"),
            models.CheckConstraint(
                condition=(
                    Q(status="used")
                    & Q(used_order__isnull=False)
                    & Q(used_at__isnull=False)
                    & Q(used_amount__gt=0)
                    & Q(used_amount__lte=F("amount"))
                )
                | (
                    ~Q(status="used")
                    & Q(used_order__isnull=True)
                    & Q(used_at__isnull=True)
                    & Q(used_amount__isnull=True)
                ),
                name="coupon_used_has_order",
            ),
        ]

    def __str__(self) -> str:
        return f"¥{self.amount} ({self.status})"
