"""Admin of the rewards programme: merchant campaigns, coupons, and the programme's totals page.

Read-only (campaigns are run by merchants in their portal; points move only through the order flow).
The totals page (``admin:bnpl_rewards_programme``) adds up points issued, spent, lost to breaches and
expired, consumers per level, and what merchant campaigns have cost.
"""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.translation import gettext_lazy as _

from bnpl.admin_mixins import ReadOnlyAdminMixin
from bnpl.incentives import campaign_totals
from bnpl.models import Campaign, CampaignProgress, Coupon
from consumers.rewards import programme_totals


@admin.register(Campaign)
class CampaignAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "title",
        "merchant",
        "goal_count",
        "benefit_kind",
        "budget_amount",
        "spent_amount",
        "awards_count",
        "status",
        "created_at",
    )
    list_filter = ("status", "benefit_kind")
    search_fields = ("title", "merchant__display_name")
    list_select_related = ("merchant",)
    change_list_template = "admin/bnpl/campaign_change_list.html"

    def get_urls(self) -> list[URLPattern]:
        return [
            path("programme/", self.admin_site.admin_view(self.programme_view), name="bnpl_rewards_programme"),
            *super().get_urls(),
        ]

    def programme_view(self, request: HttpRequest) -> HttpResponse:
        """The rewards programme's totals."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Rewards programme totals"),
            "points": programme_totals(),
            "campaigns": campaign_totals(),
        }
        return TemplateResponse(request, "admin/bnpl/rewards_programme.html", context)


@admin.register(CampaignProgress)
class CampaignProgressAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("campaign", "consumer", "kept_count", "awarded_at", "missed_budget", "updated_at")
    list_filter = ("missed_budget",)
    search_fields = ("consumer__phone", "campaign__title")
    list_select_related = ("campaign", "consumer")


@admin.register(Coupon)
class CouponAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "consumer",
        "merchant",
        "campaign",
        "amount",
        "status",
        "expires_at",
        "created_at",
        "used_order",
        "used_amount",
    )
    list_filter = ("status",)
    search_fields = ("consumer__phone",)
    list_select_related = ("consumer", "merchant", "campaign", "used_order")
