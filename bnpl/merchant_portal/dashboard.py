"""The merchant's dashboard (/merchant/): the first page after log-in.

Today, 7 and 30 days of 先享 orders, GMV, approval and charge success rates, overdue rates by DPD bucket,
amounts the platform guaranteed, refunds and disputes (``selectors.merchant_dashboard``: one query of the
merchant's daily roll-up, bnpl/models/order_stats.py), with a daily chart (Chart.js, data through
``json_script``). Every figure links to the order list filtered to the orders behind it.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from merchants.portal.access import Capability, member_required

from .selectors import APPROVED, BILLED, CHARGED, merchant_dashboard


def _link(window: dict[str, Any], **params: Any) -> str:
    query = QueryDict(mutable=True)
    query["created_from"] = window["from"].isoformat()
    query["created_to"] = window["to"].isoformat()
    for key, value in params.items():
        if isinstance(value, (list, tuple, set, frozenset)):
            query.setlist(key, sorted(value))
        else:
            query[key] = value
    return f"{reverse('merchant:orders')}?{query.urlencode()}"


def _links(window: dict[str, Any]) -> dict[str, Any]:
    return {
        "orders": _link(window),
        "approved": _link(window, status=APPROVED),
        "gmv": _link(window, status=BILLED),
        "charged": _link(window, status=CHARGED),
        "overdue": _link(window, status=["overdue"]),
        "guaranteed": _link(window, guaranteed="on"),
        "refunded": _link(window, refunded="on"),
        "disputes": _link(window, disputed="on"),
        "dpd": {bucket["bucket"]: _link(window, dpd=bucket["bucket"]) for bucket in window["dpd"]},
    }


@member_required(Capability.VIEW)
@require_GET
def dashboard_view(request: HttpRequest) -> HttpResponse:
    data = merchant_dashboard(merchant=request.merchant)  # type: ignore[attr-defined]
    labels = {"today": _("Today"), "7d": _("Last 7 days"), "30d": _("Last 30 days")}
    windows = [
        {"key": key, "label": labels[key], "w": window, "links": _links(window)}
        for key, window in data["windows"].items()
    ]
    chart = {
        "labels": [point["day"][5:] for point in data["series"]],
        "orders": [point["orders"] for point in data["series"]],
        "gmv": [point["gmv"] for point in data["series"]],
        "overdue": [point["overdue"] for point in data["series"]],
        "dpd_labels": [bucket["bucket"] for bucket in data["windows"]["30d"]["dpd"]],
        "dpd": [bucket["count"] for bucket in data["windows"]["30d"]["dpd"]],
        "text": {"orders": _("Orders"), "gmv": _("GMV (¥)"), "overdue": _("Overdue"), "dpd": _("Overdue orders")},
    }
    return render(
        request,
        "merchants/dashboard.html",
        {"merchant": request.merchant, "windows": windows, "chart": chart},  # type: ignore[attr-defined]
    )


urlpatterns = [
    path("", dashboard_view, name="dashboard"),
]
