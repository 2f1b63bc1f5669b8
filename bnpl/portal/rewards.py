"""My rewards (/me/rewards/): 守约激励 level, points, progress to the next level, perks, history, campaigns.

Lives in ``bnpl.portal`` because it shows merchant campaigns (``bnpl.incentives``) next to the
points and levels of ``consumers.rewards``. Read-only: points are earned and lost by the order flow.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from consumers.rewards import level_history, points_history, rewards_summary
from consumers.views import consumer_required

from ..incentives import campaigns_for_consumer


@consumer_required
@require_GET
def rewards(request: HttpRequest) -> HttpResponse:
    """Level and perks, points and what expires soon, level progress, campaign progress, coupons, history."""
    consumer = request.consumer  # type: ignore[attr-defined]
    return render(
        request,
        "consumers/rewards.html",
        {
            "summary": rewards_summary(consumer),
            "entries": points_history(consumer),
            "level_changes": level_history(consumer),
            "campaigns": campaigns_for_consumer(consumer=consumer),
        },
    )
