"""Merchants (KYB), their team members and their 先享 listings."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from bnpl.validators import mask_account_number, validate_cn_mobile, validate_uscc

from .choices import ConfirmMode, ListingStatus, MemberRole, MerchantCategory, MerchantStatus, Scenario


class Merchant(models.Model):
    """A business that offers 先享 goods or services, onboarded through review (KYB).

    Only an approved merchant may have orders placed with it; ``status`` moves only
    through the services in ``merchants.services``, each of which writes a
    :class:`MerchantEvent`.
    """

    legal_name = models.CharField(_("Legal name"), max_length=200)
    display_name = models.CharField(_("Display name"), max_length=100)
    uscc = models.CharField(_("USCC"), max_length=18, unique=True, validators=[validate_uscc])
    legal_representative = models.CharField(_("Legal representative"), max_length=50, blank=True)
    contact_name = models.CharField(_("Contact"), max_length=50)
    contact_phone = models.CharField(_("Contact phone"), max_length=11, validators=[validate_cn_mobile])
    contact_email = models.EmailField(_("Contact email"), blank=True)
    city = models.CharField(_("City"), max_length=50, blank=True)
    categories = ArrayField(
        models.CharField(max_length=32, choices=MerchantCategory.choices),
        verbose_name=_("Business categories"),
        default=list,
    )
    settlement_bank_name = models.CharField(_("Bank"), max_length=100)
    settlement_account_name = models.CharField(_("Account name"), max_length=200)
    settlement_account_number = models.CharField(_("Account number"), max_length=34)
    fee_rate = models.DecimalField(
        _("Fee rate"),
        max_digits=5,
        decimal_places=4,
        default=Decimal("0.0060"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("0.1"))],
        help_text=_("The platform's fee on each charge, e.g. 0.0060 means 0.6%."),
    )
    status = models.CharField(_("Status"), max_length=16, choices=MerchantStatus.choices, default=MerchantStatus.DRAFT)
    rejection_reason = models.TextField(_("Rejection reason"), blank=True)
    submitted_at = models.DateTimeField(_("Submitted at"), null=True, blank=True)
    approved_at = models.DateTimeField(_("Approved at"), null=True, blank=True)
    created_at = models.DateTimeField(_("Created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("Updated at"), auto_now=True)

    class Meta:
        verbose_name = _("Merchant")
        verbose_name_plural = _("Merchant")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(fee_rate__gte=0) & Q(fee_rate__lte=Decimal("0.1")), name="merchant_fee_rate_range"
            ),
            models.CheckConstraint(
                condition=~Q(status=MerchantStatus.REJECTED) | ~Q(rejection_reason=""),
                name="merchant_rejection_has_reason",
            ),
        ]

    def __str__(self) -> str:
        return self.display_name or self.legal_name

    @property
    def masked_account_number(self) -> str:
        return mask_account_number(self.settlement_account_number)

    @property
    def is_operating(self) -> bool:
        return self.status == MerchantStatus.APPROVED


class MerchantEvent(models.Model):
    """An append-only record of every onboarding state change: who, when, from, to, why."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    from_status = models.CharField(max_length=16, choices=MerchantStatus.choices, blank=True)
    to_status = models.CharField(max_length=16, choices=MerchantStatus.choices)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("Merchant event")
        verbose_name_plural = _("Merchant event")
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.merchant_id}: {self.from_status or '∅'} → {self.to_status}"


class MerchantMember(models.Model):
    """Links a user to a merchant with a role (owner, operator, finance, viewer)."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="merchant_memberships")
    role = models.CharField(_("Role"), max_length=16, choices=MemberRole.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("Merchant member")
        verbose_name_plural = _("Merchant member")
        constraints = [models.UniqueConstraint(fields=["merchant", "user"], name="merchant_member_unique")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.merchant} ({self.role})"


class Listing(models.Model):
    """A 先享 good or service: what the badge sits on, with its pricing rule.

    ``pricing_rule`` is the JSON form of a rule from :mod:`merchants.pricing`; it is
    validated by ``parse_rule`` in the services, and copied onto every order at
    creation so that a later price change never touches an order already placed.
    """

    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="listings")
    title = models.CharField(_("Title"), max_length=120)
    description = models.TextField(_("Description"), blank=True)
    scenario = models.CharField(_("Scenario"), max_length=32, choices=Scenario.choices)
    confirm_mode = models.CharField(
        _("Confirmation mode"), max_length=16, choices=ConfirmMode.choices, default=ConfirmMode.EACH_TIME
    )
    max_amount = models.DecimalField(_("Per-order ceiling"), max_digits=12, decimal_places=2)
    min_score = models.PositiveSmallIntegerField(
        _("Minimum score"), default=550, validators=[MinValueValidator(350), MaxValueValidator(950)]
    )
    order_ttl_minutes = models.PositiveIntegerField(
        _("Confirmation time-to-live (minutes)"),
        default=30,
        validators=[MinValueValidator(1), MaxValueValidator(60 * 24 * 30)],
    )
    pricing_rule = models.JSONField(_("Pricing rule"))
    status = models.CharField(_("Status"), max_length=16, choices=ListingStatus.choices, default=ListingStatus.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("Listing")
        verbose_name_plural = _("Listing")
        ordering = ["merchant_id", "title"]
        constraints = [
            models.CheckConstraint(condition=Q(max_amount__gt=0), name="listing_max_amount_positive"),
            models.CheckConstraint(
                condition=Q(min_score__gte=350) & Q(min_score__lte=950), name="listing_min_score_range"
            ),
            models.CheckConstraint(
                condition=Q(order_ttl_minutes__gte=1) & Q(order_ttl_minutes__lte=60 * 24 * 30),
                name="listing_order_ttl_range",
            ),
        ]
        indexes = [
            # The catalogue lists active listings by scenario.
            models.Index(fields=["scenario"], condition=Q(status="active"), name="listing_active_scenario_idx"),
        ]

    def __str__(self) -> str:
        return self.title
