"""The merchant's campaigns (/merchant/campaigns/): "keep N promises with us → a benefit" (芝麻GO-like).

The list shows each campaign's goal, benefit, budget, what it has cost so far and how many consumers
take part; owners and finance (``MANAGE_CAMPAIGNS``) create, pause, resume and end campaigns. Every
write is one service of :mod:`bnpl.incentives`; another merchant's campaign id is a 404.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from consumers.choices import RewardLevel
from consumers.forms import add_domain_error
from merchants.activity import activity_record
from merchants.portal.access import Capability, member_can, member_required

from ..exceptions import DomainError
from ..incentives import (
    campaign_create,
    campaign_end,
    campaign_get_for_merchant,
    campaign_pause,
    campaign_resume,
    campaigns_for_merchant,
)
from ..models.incentives import BenefitKind, Campaign


class CampaignForm(forms.Form):
    """A new campaign; the service validates the amounts and the budget."""

    title = forms.CharField(label=gettext_lazy("Title"), max_length=80)
    goal_count = forms.IntegerField(
        label=gettext_lazy("Promises to keep"),
        min_value=1,
        max_value=100,
        initial=3,
        help_text=gettext_lazy("Orders with you paid on time, counted from today."),
    )
    benefit_kind = forms.ChoiceField(label=gettext_lazy("Benefit"), choices=BenefitKind.choices)
    benefit_amount = forms.CharField(label=gettext_lazy("Coupon amount (¥)"), required=False)
    benefit_points = forms.IntegerField(label=gettext_lazy("Points"), min_value=1, required=False)
    budget_amount = forms.CharField(
        label=gettext_lazy("Budget (¥)"), help_text=gettext_lazy("No award is paid once the budget is used up.")
    )
    min_level = forms.ChoiceField(
        label=gettext_lazy("Open to"),
        choices=RewardLevel.choices,
        initial=RewardLevel.NEWCOMER,
        required=False,
        help_text=gettext_lazy("A higher level makes it a members-only campaign."),
    )


_ACTIONS = {"pause": campaign_pause, "resume": campaign_resume, "end": campaign_end}


def _list_response(request: HttpRequest, form: CampaignForm, status: int = 200) -> HttpResponse:
    campaigns = campaigns_for_merchant(merchant=request.merchant)  # type: ignore[attr-defined]
    totals = {
        "budget": sum((c.budget_amount for c in campaigns), start=0),
        "spent": sum((c.spent_amount for c in campaigns), start=0),
        "awards": sum(c.awards_count for c in campaigns),
    }
    can_manage = member_can(request.member, Capability.MANAGE_CAMPAIGNS)  # type: ignore[attr-defined]
    return render(
        request,
        "merchants/campaigns.html",
        {"campaigns": campaigns, "form": form, "can_manage": can_manage, "totals": totals},
        status=status,
    )


@member_required(Capability.VIEW)
@require_GET
def campaign_list(request: HttpRequest) -> HttpResponse:
    """The campaigns and their cost; owners and finance see the form that posts to ``campaign_create``."""
    return _list_response(request, CampaignForm())


@member_required(Capability.MANAGE_CAMPAIGNS)
@require_POST
def campaign_create_view(request: HttpRequest) -> HttpResponse:
    """Create a campaign; a refused one comes back on the list page with the typed values (400)."""
    form = CampaignForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            campaign = campaign_create(
                actor=request.user,
                merchant=request.merchant,  # type: ignore[attr-defined]
                title=data["title"],
                goal_count=data["goal_count"],
                benefit_kind=data["benefit_kind"],
                benefit_amount=data["benefit_amount"] if data["benefit_kind"] == BenefitKind.COUPON else None,
                benefit_points=data["benefit_points"] if data["benefit_kind"] == BenefitKind.POINTS else None,
                budget_amount=data["budget_amount"],
                min_level=data["min_level"] or RewardLevel.NEWCOMER,
            )
        except DomainError as exc:
            add_domain_error(form, exc)
        else:
            activity_record(
                merchant=request.merchant,  # type: ignore[attr-defined]
                member=request.member,  # type: ignore[attr-defined]
                action="campaign.create",
                target=campaign.title,
                detail={"budget": campaign.budget_amount},
            )
            messages.success(request, _("The campaign is live."))
            return redirect("merchant:campaigns")
    return _list_response(request, form, status=400)


@member_required(Capability.MANAGE_CAMPAIGNS)
@require_POST
def campaign_action(request: HttpRequest, campaign_id: int, action: str) -> HttpResponse:
    """Pause, resume or end one of the merchant's campaigns."""
    service = _ACTIONS.get(action)
    try:
        campaign = campaign_get_for_merchant(merchant=request.merchant, campaign_id=campaign_id)  # type: ignore[attr-defined]
    except Campaign.DoesNotExist:
        raise Http404 from None
    if service is None:
        raise Http404
    try:
        service(actor=request.user, campaign=campaign)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        activity_record(
            merchant=request.merchant,  # type: ignore[attr-defined]
            member=request.member,  # type: ignore[attr-defined]
            action=f"campaign.{action}",
            target=campaign.title,
        )
        messages.success(request, _("The campaign is updated."))
    return redirect("merchant:campaigns")


urlpatterns = [
    path("campaigns/", campaign_list, name="campaigns"),
    path("campaigns/create/", campaign_create_view, name="campaign_create"),
    path("campaigns/<int:campaign_id>/<str:action>/", campaign_action, name="campaign_action"),
]
